// Fused eval-mode batch norm + activation, and squeeze-excite channel scaling, for (B, C, L) arrays.
//
//   bn_act:        y = act(x * scale[c] + shift[c])      scale = gamma / sqrt(var + eps), shift = beta - mean * scale
//   channel_scale: y[b,c,l] = x[b,c,l] * s[b,c]
// act: 0 identity, 1 relu, 2 relu6, 3 hardswish, 4 hardsigmoid, 5 selu, 6 sigmoid (as kernels/reference.py).

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

#define INSTANTIATE(T, SUFFIX)                                                                                  \
extern "C" __global__ void bn_act_##SUFFIX(const T* x, const T* scale, const T* shift, T* y, long long total,    \
                                           int C, int L, int act) {                                            \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i >= total) return;                                                                                     \
    int c = (int)((i / L) % C);                                                                                 \
    y[i] = activate<T>(x[i] * scale[c] + shift[c], act);                                                        \
}                                                                                                               \
extern "C" __global__ void channel_scale_##SUFFIX(const T* x, const T* s, T* y, long long total, int L) {        \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i >= total) return;                                                                                     \
    y[i] = x[i] * s[i / L];                                                                                     \
}

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
