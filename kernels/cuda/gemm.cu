// One general matrix product for every product of the CUDA backend (pointwise and dense
// convolutions, linear layers, the DFT and interpolation matrices). Hand-written rather than
// cuBLAS because CuPy refuses to record cuBLAS calls in a stream capture, and a training step must
// be recordable as a CUDA graph (tinysml/cuda_graph.py).
//
//   C[z](m, n) = bias[m] + sum_k A[z](m, k) B[z](k, n)          (accumulate: C += the sum instead)
//
// Operands are addressed by element strides, with two "split" axes so that one launch covers a
// whole convolution without copies: k = k1 * KS + k2 (0 <= k2 < KS), n = n1 * NS + n2 (0 <= n2 < NS),
// and the grid's z = z1 * Z2 + z2:
//
//   A(z, m, k) = a[z1 a_z1 + z2 a_z2 + m a_m + k1 a_k1 + k2 a_k2]
//   B(z, k, n) = b[z1 b_z1 + z2 b_z2 + k1 b_k1 + k2 b_k2 + n1 b_n1 + n2 b_n2]
//   C(z, m, n) = c[z1 c_z1 + z2 c_z2 + m c_m + n1 c_n1 + n2 c_n2]
//
// E.g. the pointwise convolution y (B, O, L) = w (O, C) x (B, C, L) is one product with M = O,
// K = C, N = B L and n = (b, l): NS = L, b_n1 = C L, b_n2 = 1, c_n1 = O L, c_n2 = 1.
//
// Tiling: a block of 256 threads computes a 64 x 64 tile of C, each thread 4 x 4 elements (rows
// ty + 16 i, columns tx + 16 j), over K in steps of 16 staged in shared memory (padded rows: no
// bank conflicts on the transposed store). Sums run in float for float32 (as cuBLAS's default) and
// in double for float64, in k order, so every element's sum is the same whatever M, N or the batch:
// the product is batch-invariant by construction.

#define BM 64
#define BN 64
#define BK 16
#define NT 256

template <typename T, typename Acc>
__device__ __forceinline__ void gemm_tile(
    const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c, const T* __restrict__ bias,
    int M, int N, int K, int KS, int NS, int Z2,
    long long a_z1, long long a_z2, long long a_m, long long a_k1, long long a_k2,
    long long b_z1, long long b_z2, long long b_k1, long long b_k2, long long b_n1, long long b_n2,
    long long c_z1, long long c_z2, long long c_m, long long c_n1, long long c_n2,
    int accumulate, int has_bias)
{
    __shared__ T As[BK][BM + 1];
    __shared__ T Bs[BK][BN + 1];
    const int z = blockIdx.z, z1 = z / Z2, z2 = z - z1 * Z2;
    a += z1 * a_z1 + z2 * a_z2;
    b += z1 * b_z1 + z2 * b_z2;
    c += z1 * c_z1 + z2 * c_z2;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    Acc acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0;

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += NT) {           // A tile: consecutive threads along k
            const int mm = e / BK, kk = e - mm * BK, m = m0 + mm, k = k0 + kk;
            T v = 0;
            if (m < M && k < K) {
                const int k1 = k / KS, k2 = k - k1 * KS;
                v = a[m * a_m + k1 * a_k1 + k2 * a_k2];
            }
            As[kk][mm] = v;
        }
        for (int e = tid; e < BK * BN; e += NT) {           // B tile: consecutive threads along n
            const int kk = e / BN, nn = e - kk * BN, k = k0 + kk, n = n0 + nn;
            T v = 0;
            if (k < K && n < N) {
                const int k1 = k / KS, k2 = k - k1 * KS, n1 = n / NS, n2 = n - n1 * NS;
                v = b[k1 * b_k1 + k2 * b_k2 + n1 * b_n1 + n2 * b_n2];
            }
            Bs[kk][nn] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            T ar[4], br[4];
#pragma unroll
            for (int i = 0; i < 4; i++) ar[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) br[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += (Acc)ar[i] * (Acc)br[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
        const Acc add = has_bias ? (Acc)bias[m] : (Acc)0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = n0 + tx + 16 * j;
            if (n >= N) continue;
            const int n1 = n / NS, n2 = n - n1 * NS;
            T* p = c + m * c_m + n1 * c_n1 + n2 * c_n2;
            *p = accumulate ? (T)((Acc)*p + acc[i][j]) : (T)(acc[i][j] + add);
        }
    }
}

#define GEMM_ARGS(T) \
    const T* a, const T* b, T* c, const T* bias, int M, int N, int K, int KS, int NS, int Z2, \
    long long a_z1, long long a_z2, long long a_m, long long a_k1, long long a_k2, \
    long long b_z1, long long b_z2, long long b_k1, long long b_k2, long long b_n1, long long b_n2, \
    long long c_z1, long long c_z2, long long c_m, long long c_n1, long long c_n2, int accumulate, int has_bias
#define GEMM_PASS \
    a, b, c, bias, M, N, K, KS, NS, Z2, a_z1, a_z2, a_m, a_k1, a_k2, b_z1, b_z2, b_k1, b_k2, b_n1, b_n2, \
    c_z1, c_z2, c_m, c_n1, c_n2, accumulate, has_bias

extern "C" __global__ void __launch_bounds__(NT) gemm_f32(GEMM_ARGS(float)) { gemm_tile<float, float>(GEMM_PASS); }
extern "C" __global__ void __launch_bounds__(NT) gemm_f64(GEMM_ARGS(double)) { gemm_tile<double, double>(GEMM_PASS); }
