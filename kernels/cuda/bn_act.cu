// Fused eval-mode batch norm + activation, and squeeze-excite channel scaling, for (B, C, L) arrays.
//
//   bn_act:        y = act(x * scale[c] + shift[c])      scale = gamma / sqrt(var + eps), shift = beta - mean * scale
//   channel_scale: y[b,c,l] = x[b,c,l] * s[b,c]
// act: 0 identity, 1 relu, 2 relu6, 3 hardswish, 4 hardsigmoid, 5 selu, 6 sigmoid (as kernels/reference.py).

#include "common.cuh"

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

// ---------------------------------------------------------------------------------------------------
// Training-mode batch norm fused with its activation: statistics over (B, L) for each channel c,
// N = B L, xhat = (x - mean_c) invstd_c, pre = gamma_c xhat + beta_c.
//
//   bn_stats:        mean_c = sum x / N;  var_c = sum (x - mean_c)^2 / N (biased, two passes);
//                    invstd_c = 1 / sqrt(var_c + eps);  scale_c = gamma_c invstd_c;  shift_c = beta_c - mean_c scale_c
//                    (one block per channel, shared-memory tree reductions in a fixed order; y = bn_act(x, scale, shift))
//   bn_act_grad_sums: g = act'(pre) gy;  gbeta_c = sum g;  ggamma_c = sum g xhat         (one block per channel)
//   bn_act_grad_input: gx = gamma_c invstd_c / N (N g - gbeta_c - xhat ggamma_c)        (one thread per element)
// act' follows kernels/reference.py act_bwd (relu'(0) = 0, hardswish'(3) = 1.5).

template <typename T>
__device__ void bn_stats(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                         T* __restrict__ mean, T* __restrict__ var, T* __restrict__ invstd, T* __restrict__ scale,
                         T* __restrict__ shift, int B, int C, int L, double eps) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    int c = blockIdx.x;
    long long n = (long long)B * L;
    T part = T(0);
    for (long long i = threadIdx.x; i < n; i += blockDim.x)
        part += x[((i / L) * C + c) * L + i % L];
    T mu = block_sum(part, smem) / T(n);
    part = T(0);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        T d = x[((i / L) * C + c) * L + i % L] - mu;
        part += d * d;
    }
    T s2 = block_sum(part, smem) / T(n);
    if (threadIdx.x == 0) {
        T inv = T(1) / sqrt(s2 + T(eps));
        mean[c] = mu; var[c] = s2; invstd[c] = inv;
        scale[c] = gamma[c] * inv;
        shift[c] = beta[c] - mu * gamma[c] * inv;
    }
}

template <typename T>
__device__ void bn_act_grad_sums(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ gamma,
                                 const T* __restrict__ beta, const T* __restrict__ mean, const T* __restrict__ invstd,
                                 T* __restrict__ ggamma, T* __restrict__ gbeta, int B, int C, int L, int act) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    int c = blockIdx.x;
    long long n = (long long)B * L;
    T sg = T(0), sgx = T(0);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        long long at = ((i / L) * C + c) * L + i % L;
        T xhat = (x[at] - mean[c]) * invstd[c];
        T g = gy[at] * activate_grad<T>(gamma[c] * xhat + beta[c], act);
        sg += g;
        sgx += g * xhat;
    }
    T total_g = block_sum(sg, smem);
    T total_gx = block_sum(sgx, smem);
    if (threadIdx.x == 0) { gbeta[c] = total_g; ggamma[c] = total_gx; }
}

template <typename T>
__device__ void bn_act_grad_input(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ gamma,
                                  const T* __restrict__ beta, const T* __restrict__ mean, const T* __restrict__ invstd,
                                  const T* __restrict__ ggamma, const T* __restrict__ gbeta, T* __restrict__ gx,
                                  long long total, int C, int L, int act) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int c = (int)((i / L) % C);
    T n = T(total / C);
    T xhat = (x[i] - mean[c]) * invstd[c];
    T g = gy[i] * activate_grad<T>(gamma[c] * xhat + beta[c], act);
    gx[i] = gamma[c] * invstd[c] / n * (n * g - gbeta[c] - xhat * ggamma[c]);
}

#define INSTANTIATE_TRAIN(T, SUFFIX)                                                                              \
extern "C" __global__ void bn_stats_##SUFFIX(const T* x, const T* gamma, const T* beta, T* mean, T* var, T* invstd, \
        T* scale, T* shift, int B, int C, int L, double eps) {                                                    \
    bn_stats<T>(x, gamma, beta, mean, var, invstd, scale, shift, B, C, L, eps); }                                \
extern "C" __global__ void bn_act_grad_sums_##SUFFIX(const T* gy, const T* x, const T* gamma, const T* beta,       \
        const T* mean, const T* invstd, T* ggamma, T* gbeta, int B, int C, int L, int act) {                      \
    bn_act_grad_sums<T>(gy, x, gamma, beta, mean, invstd, ggamma, gbeta, B, C, L, act); }                         \
extern "C" __global__ void bn_act_grad_input_##SUFFIX(const T* gy, const T* x, const T* gamma, const T* beta,      \
        const T* mean, const T* invstd, const T* ggamma, const T* gbeta, T* gx, long long total, int C, int L,     \
        int act) { bn_act_grad_input<T>(gy, x, gamma, beta, mean, invstd, ggamma, gbeta, gx, total, C, L, act); }

INSTANTIATE_TRAIN(float, f32)
INSTANTIATE_TRAIN(double, f64)
