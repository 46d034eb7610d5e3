// Activations on their own, squeeze-excite's scaling fused with the activation after it, the mean
// over time and its gradient, and batch norm's running-statistics update: each one launch where the
// array code on CuPy takes two to ten
// (a training step of a small model is launch-bound; see kernels/cuda.py).
//
//   act:                    y = act(x)                                   (any shape, flattened)
//   act_grad:               gx = act'(x) gy
//   channel_scale_act:      y[b,c,l] = act(x[b,c,l] s[b,c])              x (B, C, L), s (B, C)
//   channel_scale_act_grad: g = act'(x s) gy;  gx = g s[b,c];  gs[b,c] = sum_l g x
//                           (one block per row (b, c), a shared-memory tree sum in a fixed order)
//   time_mean:              m[b,c] = sum_l x[b,c,l] * (1 / L)                (one block per row, as above)
//   time_mean_grad:         gx[b,c,l] = g[b,c] * (1 / L)
//   bn_running:             r_mean = keep r_mean + m mean;  r_var = keep r_var + m var ratio
//                           (keep = 1 - momentum, ratio = N / (N - 1): the unbiased variance)
//   bn_running_device:      the same with momentum read from device memory (precise BN replayed as a
//                           CUDA graph changes it every batch); keep and m rounded once to T, as the host does
// activate, activate_grad and block_sum: common.cuh.

#include "common.cuh"

template <typename T>
__device__ void channel_scale_act_grad(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ s,
                                       T* __restrict__ gx, T* __restrict__ gs, int L, int act) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    long long row = blockIdx.x;                        // (b, c) flattened: s and gs are (B, C) = rows
    const T scale = s[row];
    T part = T(0);
    for (int l = threadIdx.x; l < L; l += blockDim.x) {
        long long at = row * L + l;
        T g = gy[at] * activate_grad<T>(x[at] * scale, act);
        gx[at] = g * scale;
        part += g * x[at];
    }
    T total = block_sum(part, smem);
    if (threadIdx.x == 0) gs[row] = total;
}

template <typename T>
__device__ void time_mean(const T* __restrict__ x, T* __restrict__ m, int L) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    long long row = blockIdx.x;
    T part = T(0);
    for (int l = threadIdx.x; l < L; l += blockDim.x)
        part += x[row * L + l];
    T total = block_sum(part, smem);
    if (threadIdx.x == 0) m[row] = total * (T)(1.0 / L);
}

#define INSTANTIATE_ACT(T, SUFFIX)                                                                               \
extern "C" __global__ void act_##SUFFIX(const T* x, T* y, long long total, int act) {                           \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i < total) y[i] = activate<T>(x[i], act);                                                               \
}                                                                                                               \
extern "C" __global__ void act_grad_##SUFFIX(const T* x, const T* gy, T* gx, long long total, int act) {        \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i < total) gx[i] = gy[i] * activate_grad<T>(x[i], act);                                                 \
}                                                                                                               \
extern "C" __global__ void channel_scale_act_##SUFFIX(const T* x, const T* s, T* y, long long total, int L,      \
                                                      int act) {                                                \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i < total) y[i] = activate<T>(x[i] * s[i / L], act);                                                    \
}                                                                                                               \
extern "C" __global__ void channel_scale_act_grad_##SUFFIX(const T* gy, const T* x, const T* s, T* gx, T* gs,    \
                                                           int L, int act) {                                    \
    channel_scale_act_grad<T>(gy, x, s, gx, gs, L, act);                                                        \
}                                                                                                               \
extern "C" __global__ void time_mean_##SUFFIX(const T* x, T* m, int L) { time_mean<T>(x, m, L); }                \
extern "C" __global__ void time_mean_grad_##SUFFIX(const T* g, T* gx, long long total, int L) {                  \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i < total) gx[i] = g[i / L] * (T)(1.0 / L);                                                             \
}                                                                                                               \
extern "C" __global__ void bn_running_##SUFFIX(T* r_mean, T* r_var, const T* mean, const T* var, T keep, T m,    \
                                               T ratio, int C) {                                                \
    int c = blockIdx.x * blockDim.x + threadIdx.x;                                                              \
    if (c >= C) return;                                                                                         \
    r_mean[c] = r_mean[c] * keep + m * mean[c];                                                                 \
    r_var[c] = r_var[c] * keep + m * var[c] * ratio;                                                            \
}                                                                                                               \
extern "C" __global__ void bn_running_device_##SUFFIX(T* r_mean, T* r_var, const T* mean, const T* var,          \
                                                      const double* momentum, T ratio, int C) {                 \
    int c = blockIdx.x * blockDim.x + threadIdx.x;                                                              \
    if (c >= C) return;                                                                                         \
    const T keep = (T)(1.0 - momentum[0]), m = (T)momentum[0];                                                  \
    r_mean[c] = r_mean[c] * keep + m * mean[c];                                                                 \
    r_var[c] = r_var[c] * keep + m * var[c] * ratio;                                                            \
}

INSTANTIATE_ACT(float, f32)
INSTANTIATE_ACT(double, f64)
