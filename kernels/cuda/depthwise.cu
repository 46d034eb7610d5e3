// Depthwise 1-D convolution for tinysml's CuPy backend (loaded by kernels/cuda.py with RawModule).
// Layout (B, C, L), row-major; w (C, K); Lout = (L + 2P - D(K-1) - 1) / S + 1.
//
//   forward      y[b,c,l]  = bias[c] + sum_k w[c,k] x[b,c,l*S + k*D - P]          (zero outside [0, L))
//   grad input   gx[b,c,j] = sum_{k,l : l*S + k*D - P = j} w[c,k] gy[b,c,l]         (gathered: one thread per j)
//   grad weight  gw[c,k]   = sum_{b,l} gy[b,c,l] x[b,c,l*S + k*D - P]               (one block per channel,
//                gb[c]     = sum_{b,l} gy[b,c,l]                                     shared-memory reduction,
//                                                                                    no atomics)
// Consecutive threads handle consecutive l (or j), so global loads and stores are coalesced.

#define MAX_K 16

template <typename T>
__device__ void dw_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ y, int B, int C, int L, int K, int Lout, int S, int P, int D, int has_bias) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)B * C * Lout;
    if (idx >= total) return;
    int l = (int)(idx % Lout);
    long long bc = idx / Lout;
    int c = (int)(bc % C);
    const T* xr = x + bc * L;
    const T* wr = w + (long long)c * K;
    T acc = has_bias ? bias[c] : T(0);
    int base = l * S - P;
    for (int k = 0; k < K; ++k) {
        int j = base + k * D;
        if (j >= 0 && j < L) acc += wr[k] * xr[j];
    }
    y[idx] = acc;
}

template <typename T>
__device__ void dw_bwd_input(const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx,
                             int B, int C, int L, int K, int Lout, int S, int P, int D) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)B * C * L;
    if (idx >= total) return;
    int j = (int)(idx % L);
    long long bc = idx / L;
    int c = (int)(bc % C);
    const T* gyr = gy + bc * Lout;
    const T* wr = w + (long long)c * K;
    T acc = T(0);
    for (int k = 0; k < K; ++k) {
        int t = j + P - k * D;                 // = l * S for the output l that read x[j] through tap k
        if (t < 0 || t % S) continue;
        int l = t / S;
        if (l < Lout) acc += wr[k] * gyr[l];
    }
    gx[idx] = acc;
}

template <typename T>
__device__ void dw_bwd_weight(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gw, T* __restrict__ gb,
                              int B, int C, int L, int K, int Lout, int S, int P, int D) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);         // blockDim.x values
    int c = blockIdx.x;
    T part[MAX_K + 1];
    for (int k = 0; k <= K; ++k) part[k] = T(0);
    long long n = (long long)B * Lout;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {   // strided over (b, l) pairs
        int b = (int)(i / Lout), l = (int)(i % Lout);
        const T* xr = x + ((long long)b * C + c) * L;
        T g = gy[((long long)b * C + c) * Lout + l];
        part[K] += g;
        int base = l * S - P;
        for (int k = 0; k < K; ++k) {
            int j = base + k * D;
            if (j >= 0 && j < L) part[k] += g * xr[j];
        }
    }
    for (int k = 0; k <= K; ++k) {                   // tree reduction of each partial, in a fixed order
        smem[threadIdx.x] = part[k];
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) smem[threadIdx.x] += smem[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            if (k < K) gw[(long long)c * K + k] = smem[0];
            else gb[c] = smem[0];
        }
        __syncthreads();
    }
}

#define INSTANTIATE(T, SUFFIX)                                                                                   \
extern "C" __global__ void dw_conv1d_fwd_##SUFFIX(const T* x, const T* w, const T* b, T* y, int B, int C, int L,   \
        int K, int Lout, int S, int P, int D, int has_bias) { dw_fwd<T>(x, w, b, y, B, C, L, K, Lout, S, P, D, has_bias); } \
extern "C" __global__ void dw_conv1d_bwd_input_##SUFFIX(const T* gy, const T* w, T* gx, int B, int C, int L, int K, \
        int Lout, int S, int P, int D) { dw_bwd_input<T>(gy, w, gx, B, C, L, K, Lout, S, P, D); }                 \
extern "C" __global__ void dw_conv1d_bwd_weight_##SUFFIX(const T* gy, const T* x, T* gw, T* gb, int B, int C, int L, \
        int K, int Lout, int S, int P, int D) { dw_bwd_weight<T>(gy, x, gw, gb, B, C, L, K, Lout, S, P, D); }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
