// Depthwise 1-D convolution for tinysml's CuPy backend (loaded by kernels/cuda.py with RawModule).
// Layout (B, C, L), row-major; w (C, K); Lout = (L + 2P - D(K-1) - 1) / S + 1.
//
//   forward      y[b,c,l]  = bias[c] + sum_k w[c,k] x[b,c,l*S + k*D - P]          (zero outside [0, L))
//   grad input   gx[b,c,j] = sum_{k,l : l*S + k*D - P = j} w[c,k] gy[b,c,l]         (gathered: one thread per j)
//   grad weight  gw[c,k]   = sum_{b,l} gy[b,c,l] x[b,c,l*S + k*D - P]               (blocks (c, g): block g sums
//                gb[c]     = sum_{b,l} gy[b,c,l]                                     its slice of the batch into
//                                                                                    part[c,g,:], then one thread
//                                                                                    per (c, k) adds the G parts
//                                                                                    in order: no atomics; with
//                                                                                    G = 1 the block writes gw, gb)
// Consecutive threads handle consecutive l (or j), so global loads and stores are coalesced.
//

#define MAX_K 16

// Each thread computes ITEMS elements of a flat (B*C, inner) array, blockDim.x apart, so a warp's
// loads and stores stay coalesced; it locates its first element once, with 32-bit division whenever
// the array has fewer than 2^31 elements, and steps to the next by additions. Per-element index
// arithmetic (64-bit division is a long emulated sequence on the GPU) was the forward kernel's limit.
#define ITEMS 4

struct Cursor {
    long long row;   // b * C + c
    int col, c;      // position in the row (l or j), channel
};

template <typename I>
__device__ __forceinline__ Cursor locate(I idx, int inner, int C) {
    I r = idx / inner;
    return Cursor{(long long)r, (int)(idx - r * inner), (int)(r % (I)C)};
}

__device__ __forceinline__ Cursor locate_any(long long idx, long long total, int inner, int C) {
    return total <= 0x7fffffffLL ? locate<unsigned>((unsigned)idx, inner, C) : locate<long long>(idx, inner, C);
}

struct Step {        // blockDim.x elements further on: dr rows, dl columns, dc channels
    int dr, dl, dc;
};

__device__ __forceinline__ Step step_of(int inner, int C) {
    int dr = blockDim.x / inner;
    return Step{dr, (int)(blockDim.x - dr * inner), dr % C};
}

__device__ __forceinline__ void advance(Cursor& p, Step s, int inner, int C) {
    p.row += s.dr; p.col += s.dl; p.c += s.dc;
    if (p.col >= inner) { p.col -= inner; ++p.row; ++p.c; }
    if (p.c >= C) p.c -= C;
}

template <typename T>
__device__ void dw_fwd(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ y, int B, int C, int L, int K, int Lout, int S, int P, int D, int has_bias) {
    long long idx = (long long)blockIdx.x * blockDim.x * ITEMS + threadIdx.x;
    long long total = (long long)B * C * Lout;
    if (idx >= total) return;
    Cursor p = locate_any(idx, total, Lout, C);
    Step st = step_of(Lout, C);
    for (int i = 0; i < ITEMS && idx < total; ++i, idx += blockDim.x, advance(p, st, Lout, C)) {
        const T* xr = x + p.row * L;
        const T* wr = w + (long long)p.c * K;
        T acc = has_bias ? bias[p.c] : T(0);
        int base = p.col * S - P;
        for (int k = 0; k < K; ++k) {
            int j = base + k * D;
            if (j >= 0 && j < L) acc += wr[k] * xr[j];
        }
        y[idx] = acc;
    }
}

template <typename T>
__device__ void dw_bwd_input(const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx,
                             int B, int C, int L, int K, int Lout, int S, int P, int D) {
    long long idx = (long long)blockIdx.x * blockDim.x * ITEMS + threadIdx.x;
    long long total = (long long)B * C * L;
    if (idx >= total) return;
    Cursor p = locate_any(idx, total, L, C);
    Step st = step_of(L, C);
    for (int i = 0; i < ITEMS && idx < total; ++i, idx += blockDim.x, advance(p, st, L, C)) {
        const T* gyr = gy + p.row * Lout;
        const T* wr = w + (long long)p.c * K;
        T acc = T(0);
        for (int k = 0; k < K; ++k) {
            int t = p.col + P - k * D;         // = l * S for the output l that read x[j] through tap k
            if (t < 0) continue;
            int l = S == 1 ? t : t / S;
            if (l * S != t) continue;
            if (l < Lout) acc += wr[k] * gyr[l];
        }
        gx[idx] = acc;
    }
}

template <typename T>
__device__ void dw_bwd_weight(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ part,
                              T* __restrict__ gw, T* __restrict__ gb, int B, int C, int L, int K, int Lout, int S, int P, int D) {
    extern __shared__ unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);         // blockDim.x values
    int c = blockIdx.x, g = blockIdx.y, G = gridDim.y;
    int b0 = (int)((long long)B * g / G), b1 = (int)((long long)B * (g + 1) / G);   // this block's batch slice
    T acc[MAX_K + 1];
    for (int k = 0; k <= K; ++k) acc[k] = T(0);
    // walk the slice's (b, l) pairs with a stride of blockDim.x, carrying (b, l) instead of dividing
    int db = blockDim.x / Lout, dl = blockDim.x - db * Lout;
    int b = b0 + threadIdx.x / Lout, l = threadIdx.x % Lout;
    while (b < b1) {
        const T* xr = x + ((long long)b * C + c) * L;
        T v = gy[((long long)b * C + c) * Lout + l];
        acc[K] += v;
        int base = l * S - P;
        for (int k = 0; k < K; ++k) {
            int j = base + k * D;
            if (j >= 0 && j < L) acc[k] += v * xr[j];
        }
        b += db;
        l += dl;
        if (l >= Lout) { l -= Lout; ++b; }
    }
    for (int k = 0; k <= K; ++k) {                   // tree reduction of each partial, in a fixed order
        smem[threadIdx.x] = acc[k];
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) smem[threadIdx.x] += smem[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            if (G > 1) part[((long long)c * G + g) * (K + 1) + k] = smem[0];
            else if (k < K) gw[c * K + k] = smem[0];          // one slice: the sum is final
            else gb[c] = smem[0];
        }
        __syncthreads();
    }
}

template <typename T>
__device__ void dw_bwd_weight_sum(const T* __restrict__ part, T* __restrict__ gw, T* __restrict__ gb,
                                  int C, int K, int G) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;   // one thread per (c, k), k = K is the bias
    if (i >= C * (K + 1)) return;
    int c = i / (K + 1), k = i - c * (K + 1);
    T s = T(0);
    for (int g = 0; g < G; ++g) s += part[((long long)c * G + g) * (K + 1) + k];
    if (k < K) gw[c * K + k] = s;
    else gb[c] = s;
}

#define INSTANTIATE(T, SUFFIX)                                                                                   \
extern "C" __global__ void dw_conv1d_fwd_##SUFFIX(const T* x, const T* w, const T* b, T* y, int B, int C, int L,   \
        int K, int Lout, int S, int P, int D, int has_bias) { dw_fwd<T>(x, w, b, y, B, C, L, K, Lout, S, P, D, has_bias); } \
extern "C" __global__ void dw_conv1d_bwd_input_##SUFFIX(const T* gy, const T* w, T* gx, int B, int C, int L, int K, \
        int Lout, int S, int P, int D) { dw_bwd_input<T>(gy, w, gx, B, C, L, K, Lout, S, P, D); }                 \
extern "C" __global__ void dw_conv1d_bwd_weight_##SUFFIX(const T* gy, const T* x, T* part, T* gw, T* gb, int B,  \
        int C, int L, int K, int Lout, int S, int P, int D) { dw_bwd_weight<T>(gy, x, part, gw, gb, B, C, L, K, Lout, \
        S, P, D); }                                                                                              \
extern "C" __global__ void dw_conv1d_bwd_weight_sum_##SUFFIX(const T* part, T* gw, T* gb, int C, int K, int G) {  \
        dw_bwd_weight_sum<T>(part, gw, gb, C, K, G); }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
