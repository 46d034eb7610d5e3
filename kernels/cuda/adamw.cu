// AdamW over many parameters in one launch ("multi-tensor"): the step of kernels/cuda_optim.py
// adamw_step_device, whose learning rate lr and step count t are read from device memory (so that a
// CUDA graph of the step stays right when replayed), for up to CHUNK parameters of one dtype:
//
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   w = w (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
//
// blockIdx.y picks the parameter, the x blocks stride over its elements. The parameters' addresses
// and sizes travel in the kernel's arguments (a struct of CHUNK x 5 eight-byte fields, 2.5 KB: under
// the 4 KB every CUDA version allows), not in a table in device memory, so a CUDA graph records
// them with the launch and nothing is copied from the host. One launch replaces one per parameter
// (50 for the har-student, 105 for the har-teacher): at these sizes the launches are the cost.

#define CHUNK 64

struct Tensors {                               // kernels/multi_tensor.py TENSORS is its host twin
    unsigned long long w[CHUNK], g[CHUNK], m[CHUNK], v[CHUNK];      // device addresses
    long long n[CHUNK];                                              // elements of each
};

template <typename T>
__device__ void adamw_multi(const Tensors& ts, const double* lr, const double* t, double b1, double b2,
                            double eps, double wd) {
    const int k = blockIdx.y;
    T* __restrict__ w = reinterpret_cast<T*>(ts.w[k]);
    const T* __restrict__ g = reinterpret_cast<const T*>(ts.g[k]);
    T* __restrict__ m = reinterpret_cast<T*>(ts.m[k]);
    T* __restrict__ v = reinterpret_cast<T*>(ts.v[k]);
    const long long n = ts.n[k];
    const T keep = (T)(1 - lr[0] * wd), step = (T)(lr[0] / (1 - pow(b1, t[0])));
    const T bc2 = (T)(1 - pow(b2, t[0])), B1 = (T)b1, B2 = (T)b2;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const T gi = g[i];
        const T mi = B1 * m[i] + (1 - B1) * gi;
        const T vi = B2 * v[i] + (1 - B2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * keep - step * mi / (sqrt(vi / bc2) + (T)eps);
    }
}

extern "C" __global__ void adamw_multi_f32(const Tensors ts, const double* lr, const double* t, double b1, double b2,
                                           double eps, double wd) {
    adamw_multi<float>(ts, lr, t, b1, b2, eps, wd);
}

extern "C" __global__ void adamw_multi_f64(const Tensors ts, const double* lr, const double* t, double b1, double b2,
                                           double eps, double wd) {
    adamw_multi<double>(ts, lr, t, b1, b2, eps, wd);
}
