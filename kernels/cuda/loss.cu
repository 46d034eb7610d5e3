// Softmax cross-entropy of logits z (B, K) against target distributions q (B, K), as
// kernels/reference.py cross_entropy_fwd / _bwd, in one launch each way (the array code takes ten
// forward and four backward):
//
//   cross_entropy_fwd:  logp[b,k] = z[b,k] - max_k z[b,:] - log sum_k exp(z[b,k] - max_k z[b,:])
//                       loss = -(1/B) sum_b sum_k q[b,k] logp[b,k]
//                       (one block: each thread takes rows b = tid, tid + blockDim, ...; then a tree
//                       sum over the threads, a fixed order)
//   cross_entropy_bwd:  gz[b,k] = g (exp(logp[b,k]) - q[b,k]) / B      (g, the loss's upstream gradient,
//                       read from device memory: nothing is copied from the host)

#include "common.cuh"

template <typename T>
__device__ void cross_entropy_fwd(const T* __restrict__ z, const T* __restrict__ q, T* __restrict__ logp,
                                  T* __restrict__ loss, int B, int K) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    T part = T(0);
    for (int b = threadIdx.x; b < B; b += blockDim.x) {
        const long long row = (long long)b * K;
        T top = z[row];
        for (int k = 1; k < K; ++k) top = z[row + k] > top ? z[row + k] : top;
        T sum = T(0);
        for (int k = 0; k < K; ++k) sum += exp(z[row + k] - top);
        const T lse = log(sum);
        for (int k = 0; k < K; ++k) {
            const T lp = (z[row + k] - top) - lse;
            logp[row + k] = lp;
            part += q[row + k] * lp;
        }
    }
    T total = block_sum(part, smem);
    if (threadIdx.x == 0) loss[0] = -total / T(B);
}

#define INSTANTIATE_LOSS(T, SUFFIX)                                                                              \
extern "C" __global__ void cross_entropy_fwd_##SUFFIX(const T* z, const T* q, T* logp, T* loss, int B, int K) {   \
    cross_entropy_fwd<T>(z, q, logp, loss, B, K);                                                               \
}                                                                                                               \
extern "C" __global__ void cross_entropy_bwd_##SUFFIX(const T* logp, const T* q, const T* g, T* gz,               \
                                                      long long total, int B) {                                 \
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                                             \
    if (i < total) gz[i] = g[0] * (exp(logp[i]) - q[i]) / T(B);                                                 \
}

INSTANTIATE_LOSS(float, f32)
INSTANTIATE_LOSS(double, f64)
