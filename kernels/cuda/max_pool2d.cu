// 2-D max pooling (NCHW, no padding) on the GPU, and the two linear maps of its
// derivatives, as kernels/max_pool2d.py on the CPU.  The (n, c) planes are
// numbered p = n*C + c; argmax holds, for each output, the flat index h*W + w
// of its maximum within its plane (int64).  max_pool2d_backward scatters grad_y
// to those places, max_pool2d_gather is its adjoint; kernels/gpu.py launches
// them.  Each kernel exists once per dtype (suffix _float, _double); all
// indices are 64-bit.

// y[p][a][b] = max over i, j < kernel of x[p][a*stride + i][b*stride + j], and
// argmax[p][a][b] = its flat index, the first maximum in row-major window order
// winning ties; a NaN beats every number and the first NaN wins, as np.max.
// One thread per output element t = (p*Ho + a)*Wo + b.
template <typename T>
__device__ void max_pool_forward(const T* x, T* y, long long* argmax, long long planes,
                                 long long h, long long w, long long kernel, long long stride,
                                 long long ho, long long wo)
{
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (t >= planes * ho * wo) return;
    const long long b = t % wo, a = t / wo % ho, p = t / (wo * ho);
    const T* plane = x + p * h * w;
    long long where = a * stride * w + b * stride;
    T best = plane[where];
    for (long long i = a * stride; i < a * stride + kernel; ++i) {
        for (long long j = b * stride; j < b * stride + kernel; ++j) {
            const T v = plane[i * w + j];
            if (v > best || (v != v && best == best)) {
                best = v;
                where = i * w + j;
            }
        }
    }
    y[t] = best;
    argmax[t] = where;
}

// grad_x[p][argmax[p][t]] += grad_y[p][t], grad_x zeroed by the caller.  One
// thread per grad_y element; atomicAdd because windows overlap when
// stride < kernel, and then two outputs can share their maximum.  An index
// outside the plane is skipped and flagged in *bad, for the caller to raise.
template <typename T>
__device__ void max_pool_backward(const T* grad_y, const long long* argmax, T* grad_x, int* bad,
                                  long long count, long long out_size, long long plane_size)
{
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (t >= count) return;
    const long long k = argmax[t];
    if (k < 0 || k >= plane_size) {
        *bad = 1;
        return;
    }
    atomicAdd(grad_x + t / out_size * plane_size + k, grad_y[t]);
}

// grad_y[p][t] = grad_x[p][argmax[p][t]], the adjoint of max_pool_backward.  One
// thread per grad_y element; an index outside the plane is flagged in *bad.
template <typename T>
__device__ void max_pool_gather(const T* grad_x, const long long* argmax, T* grad_y, int* bad,
                                long long count, long long out_size, long long plane_size)
{
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (t >= count) return;
    const long long k = argmax[t];
    if (k < 0 || k >= plane_size) {
        *bad = 1;
        return;
    }
    grad_y[t] = grad_x[t / out_size * plane_size + k];
}

// The entry points cupy launches.
#define MAX_POOL2D_KERNELS(T)                                                                      \
    extern "C" __global__ void max_pool_forward_##T(const T* x, T* y, long long* argmax,           \
                                                    long long planes, long long h, long long w,    \
                                                    long long kernel, long long stride,            \
                                                    long long ho, long long wo)                    \
    {                                                                                              \
        max_pool_forward(x, y, argmax, planes, h, w, kernel, stride, ho, wo);                      \
    }                                                                                              \
    extern "C" __global__ void max_pool_backward_##T(const T* grad_y, const long long* argmax,     \
                                                     T* grad_x, int* bad, long long count,         \
                                                     long long out_size, long long plane_size)     \
    {                                                                                              \
        max_pool_backward(grad_y, argmax, grad_x, bad, count, out_size, plane_size);               \
    }                                                                                              \
    extern "C" __global__ void max_pool_gather_##T(const T* grad_x, const long long* argmax,       \
                                                   T* grad_y, int* bad, long long count,           \
                                                   long long out_size, long long plane_size)       \
    {                                                                                              \
        max_pool_gather(grad_x, argmax, grad_y, bad, count, out_size, plane_size);                 \
    }

MAX_POOL2D_KERNELS(float)
MAX_POOL2D_KERNELS(double)
