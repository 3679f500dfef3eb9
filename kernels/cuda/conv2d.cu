// 2-D convolution (NCHW input, OIHW weight, zero padding, cross-correlation) on
// the GPU: the two data-movement kernels of im2col + cuBLAS.  kernels/gpu.py
// launches them and does the matrix products through cupy's matmul:
//
//     forward       y     = W @ cols(x)         W = w as (O, C*kh*kw)
//     grad_weight   gw    = gy @ cols(x).T      gy = grad_y as (O, N*Ho*Wo)
//     grad_input    gx    = col2im(W.T @ gy)
//
// Why not one direct convolution kernel: a conv layer costs three matrix
// products (above), and at 64 channels each is a GEMM with an inner dimension
// of 64 or 576 and thousands to tens of thousands of columns, where cuBLAS's
// tuned tiling is hard to beat by hand.  The price is writing and
// reading cols once per product that uses it (memory-bound, simple kernels).
//
// The column matrix, (C*kh*kw, N*Ho*Wo), row-major:
//
//     cols[(c*kh + i)*kw + j][(n*Ho + a)*Wo + b] = xpad[n][c][a*stride + i][b*stride + j]
//
// xpad being x with `padding` zeros on every side (never materialised: a tap
// outside x reads 0).  Each kernel exists once per dtype, as im2col_float,
// im2col_double, col2im_float and col2im_double; all indices are 64-bit.

// Shapes of one convolution: x (n, c, h, w), kernel kh x kw, output ho x wo.
struct Conv {
    long long n, c, h, w, kh, kw, stride, padding, ho, wo;
};

// cols from x.  One thread per (c, n, a, b), t = ((c*N + n)*Ho + a)*Wo + b: it
// writes the kh*kw entries of column (n, a, b) in channel c's rows, so
// neighbouring threads write neighbouring columns (coalesced stores).
template <typename T>
__device__ void im2col(const T* x, T* cols, Conv g)
{
    const long long columns = g.n * g.ho * g.wo;
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (t >= g.c * columns) return;
    const long long column = t % columns, c = t / columns;
    const long long b = column % g.wo, a = column / g.wo % g.ho, n = column / (g.wo * g.ho);
    const T* plane = x + (n * g.c + c) * g.h * g.w;
    T* out = cols + c * g.kh * g.kw * columns + column;
    for (long long i = 0; i < g.kh; ++i) {
        const long long r = a * g.stride + i - g.padding;
        for (long long j = 0; j < g.kw; ++j) {
            const long long s = b * g.stride + j - g.padding;
            const bool inside = 0 <= r && r < g.h && 0 <= s && s < g.w;
            out[(i * g.kw + j) * columns] = inside ? plane[r * g.w + s] : T(0);
        }
    }
}

// gx from dcols, the adjoint of im2col: every column entry added back to the
// pixel it was read from, padding dropped,
//
//     gx[n][c][r][s] = sum of dcols[(c, i, j)][(n, a, b)]
//                      over a*stride + i = r + padding, b*stride + j = s + padding.
//
// Gather form, one thread per input pixel t = ((n*C + c)*H + r)*W + s: the
// taps that meet it are the rows i = r + padding - a*stride (i in [0, kh), a in
// [0, Ho)) and likewise the columns j, so it walks them from i = (r + padding)
// mod stride upwards, a going down, and sums its own terms.  No two threads
// write one place: no atomics, and the same sum order on every run.
template <typename T>
__device__ void col2im(const T* dcols, T* gx, Conv g)
{
    const long long columns = g.n * g.ho * g.wo;
    const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (t >= g.n * g.c * g.h * g.w) return;
    const long long s = t % g.w, r = t / g.w % g.h, c = t / (g.w * g.h) % g.c, n = t / (g.w * g.h * g.c);
    const T* image = dcols + c * g.kh * g.kw * columns + n * g.ho * g.wo;
    const long long rp = r + g.padding, sp = s + g.padding;
    T sum = 0;
    for (long long i = rp % g.stride, a = rp / g.stride; i < g.kh && a >= 0; i += g.stride, --a) {
        if (a >= g.ho) continue;
        for (long long j = sp % g.stride, b = sp / g.stride; j < g.kw && b >= 0; j += g.stride, --b) {
            if (b < g.wo) sum += image[(i * g.kw + j) * columns + a * g.wo + b];
        }
    }
    gx[t] = sum;
}

// The entry points cupy launches: the geometry comes as ten 64-bit integers in
// the order of struct Conv.
#define CONV_PARAMS long long n, long long c, long long h, long long w, long long kh, \
                    long long kw, long long stride, long long padding, long long ho, long long wo
#define CONV_ARGS Conv{n, c, h, w, kh, kw, stride, padding, ho, wo}

#define CONV2D_KERNELS(T)                                                            \
    extern "C" __global__ void im2col_##T(const T* x, T* cols, CONV_PARAMS)          \
    {                                                                                \
        im2col(x, cols, CONV_ARGS);                                                  \
    }                                                                                \
    extern "C" __global__ void col2im_##T(const T* dcols, T* gx, CONV_PARAMS)        \
    {                                                                                \
        col2im(dcols, gx, CONV_ARGS);                                                \
    }

CONV2D_KERNELS(float)
CONV2D_KERNELS(double)
