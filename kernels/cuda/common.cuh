// Device functions shared by bn_act.cu and act.cu (kernels/cuda_source.py inlines this file into each
// source before compiling it, so that CuPy's cache of compiled kernels sees every change).
//
// act: 0 identity, 1 relu, 2 relu6, 3 hardswish, 4 hardsigmoid, 5 selu, 6 sigmoid (as kernels/reference.py);
// act' follows kernels/reference.py act_bwd (relu'(0) = 0, hardswish'(3) = 1.5).
#pragma once

template <typename T>
__device__ T activate(T v, int act) {
    switch (act) {
        case 1: return v > T(0) ? v : T(0);
        case 2: return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
        case 3: { T r = v + T(3); r = r < T(0) ? T(0) : (r > T(6) ? T(6) : r); return v * r / T(6); }
        case 4: { T r = v + T(3); r = r < T(0) ? T(0) : (r > T(6) ? T(6) : r); return r / T(6); }
        case 5: return v > T(0) ? T(1.0507009873554804934193349852946) * v
                                : T(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717) * expm1(v);
        case 6: return T(1) / (T(1) + exp(-v));
        default: return v;
    }
}

template <typename T>
__device__ T activate_grad(T v, int act) {
    switch (act) {
        case 1: return v > T(0) ? T(1) : T(0);
        case 2: return (v > T(0) && v < T(6)) ? T(1) : T(0);
        case 3: return v < T(-3) ? T(0) : (v <= T(3) ? v / T(3) + T(0.5) : T(1));
        case 4: return (v > T(-3) && v < T(3)) ? T(1) / T(6) : T(0);
        case 5: return v > T(0) ? T(1.0507009873554804934193349852946)
                                : T(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717) * exp(v);
        case 6: { T s = T(1) / (T(1) + exp(-v)); return s * (T(1) - s); }
        default: return T(1);
    }
}

template <typename T>
__device__ T block_sum(T v, T* smem) {                 // every thread gets the block's sum; fixed order
    smem[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) smem[threadIdx.x] += smem[threadIdx.x + s];
        __syncthreads();
    }
    T total = smem[0];
    __syncthreads();
    return total;
}
