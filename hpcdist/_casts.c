/* 16-bit wire casts for hpcdist.compression, vectorised (hpcdist/casts.py wraps them).
 *
 *   f32_to_f16(src, dst, scale)        dst = float16(src * scale)
 *   f16_to_f32(src, dst, factor, add)  dst = float32(src) * factor   (add: dst += ...)
 *   f32_to_bf16(src, dst, scale)       dst = bfloat16(src * scale)
 *   bf16_to_f32(src, dst, factor, add) dst = float32(src) * factor   (add: dst += ...)
 *
 * src and dst are C-contiguous buffers of equal length (float32, or 2-byte
 * codes). Each result is bitwise what numpy computes in float32 for the
 * same expression (the product rounded to float32, then rounded to nearest
 * even in 16 bits; subnormals kept; inf stays inf), NaN stays a NaN. The
 * float16 loops use the CPU's F16C instructions where it has them (checked
 * at run time), else a portable bit-exact loop. The GIL is released while a
 * loop runs, so the readers' threads go on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86 1
#include <immintrin.h>
#endif

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* float -> IEEE half, round to nearest even (F. Giesen's float_to_half_fast3_rtne). */
static inline uint16_t half_of(float value)
{
    uint32_t f = bits_of(value);
    uint32_t sign = f & 0x80000000u;
    f ^= sign;
    uint16_t h;
    if (f >= 0x47800000u) {                       /* >= 65536, inf or nan */
        h = (f > 0x7f800000u) ? (uint16_t)(0x7e00u | ((f >> 13) & 0x3ffu)) : 0x7c00u;
    } else if (f < 0x38800000u) {                 /* below 2^-14: a subnormal half or 0 */
        float r = float_of(f) + float_of(126u << 23);  /* the add rounds to nearest even */
        h = (uint16_t)(bits_of(r) - (126u << 23));
    } else {
        uint32_t odd = (f >> 13) & 1u;
        f += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        f += odd;
        h = (uint16_t)(f >> 13);
    }
    return (uint16_t)(h | (sign >> 16));
}

static inline float float_of_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13));
    if (e == 0) {                                  /* zero or subnormal: m * 2^-24 */
        float v = (float)m * float_of(0x33800000u);
        return float_of(sign | bits_of(v));
    }
    return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t bf16_of(float value)
{
    uint32_t u = bits_of(value);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet = (u >> 16) | 0x40u;  /* a nan stays a (quiet) nan */
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? quiet : rounded);  /* branch-free */
}

static void f32_to_f16_plain(const float *s, uint16_t *d, Py_ssize_t n, float scale)
{
    for (Py_ssize_t i = 0; i < n; i++) d[i] = half_of(s[i] * scale);
}

static void f16_to_f32_plain(const uint16_t *s, float *d, Py_ssize_t n, float factor, int add)
{
    if (add) for (Py_ssize_t i = 0; i < n; i++) d[i] += float_of_half(s[i]) * factor;
    else for (Py_ssize_t i = 0; i < n; i++) d[i] = float_of_half(s[i]) * factor;
}

#ifdef HAVE_X86
__attribute__((target("avx2,f16c")))
static void f32_to_f16_f16c(const float *s, uint16_t *d, Py_ssize_t n, float scale)
{
    const __m256 k = _mm256_set1_ps(scale);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), k);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) d[i] = half_of(s[i] * scale);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *s, float *d, Py_ssize_t n, float factor, int add)
{
    const __m256 k = _mm256_set1_ps(factor);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))), k);
        if (add) v = _mm256_add_ps(_mm256_loadu_ps(d + i), v);
        _mm256_storeu_ps(d + i, v);
    }
    f16_to_f32_plain(s + i, d + i, n - i, factor, add);
}

static int known = -1;

static int has_f16c(void)
{
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    }
    return known;
}
static int has_avx2(void)
{
    static int avx2 = -1;
    if (avx2 < 0) {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2");
    }
    return avx2;
}
#else
static int has_f16c(void) { return 0; }
#endif

/* --- argument handling ---------------------------------------------------------------- */

typedef struct { Py_buffer src, dst; Py_ssize_t n; } Pair;

static int take_pair(PyObject *src, PyObject *dst, Py_ssize_t src_size, Py_ssize_t dst_size,
                     Pair *p)
{
    if (PyObject_GetBuffer(src, &p->src, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (PyObject_GetBuffer(dst, &p->dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&p->src);
        return -1;
    }
    if (p->src.len % src_size || p->dst.len % dst_size ||
        p->src.len / src_size != p->dst.len / dst_size) {
        PyErr_Format(PyExc_ValueError,
                     "hpcdist casts: %zd bytes of %zd-byte elements into %zd bytes of %zd-byte "
                     "elements: the lengths differ", p->src.len, src_size, p->dst.len, dst_size);
        PyBuffer_Release(&p->src);
        PyBuffer_Release(&p->dst);
        return -1;
    }
    p->n = p->src.len / src_size;
    return 0;
}

static void release(Pair *p)
{
    PyBuffer_Release(&p->src);
    PyBuffer_Release(&p->dst);
}

#if defined(HAVE_X86) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))  /* picked at load time */
#else
#define CLONES
#endif

CLONES static void f32_to_bf16_loop(const float *s, uint16_t *d, Py_ssize_t n, float scale)
{
    for (Py_ssize_t i = 0; i < n; i++) d[i] = bf16_of(s[i] * scale);
}

CLONES static void bf16_to_f32_loop(const uint16_t *s, float *d, Py_ssize_t n, float factor,
                                    int add)
{
    if (add) for (Py_ssize_t i = 0; i < n; i++) d[i] += float_of((uint32_t)s[i] << 16) * factor;
    else for (Py_ssize_t i = 0; i < n; i++) d[i] = float_of((uint32_t)s[i] << 16) * factor;
}

typedef void (*encode_fn)(const float *, uint16_t *, Py_ssize_t, float);
typedef void (*decode_fn)(const uint16_t *, float *, Py_ssize_t, float, int);

static encode_fn f16_encoder(void)
{
#ifdef HAVE_X86
    if (has_f16c()) return f32_to_f16_f16c;
#endif
    return f32_to_f16_plain;
}

static decode_fn f16_decoder(void)
{
#ifdef HAVE_X86
    if (has_f16c()) return f16_to_f32_f16c;
#endif
    return f16_to_f32_plain;
}

/* (src float32, dst 2-byte codes, scale): dst = fn(src * scale), without the GIL. */
static PyObject *run_encode(PyObject *args, encode_fn fn)
{
    PyObject *src, *dst;
    float scale;
    Pair p;
    if (!PyArg_ParseTuple(args, "OOf", &src, &dst, &scale)) return NULL;
    if (take_pair(src, dst, 4, 2, &p) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    fn(p.src.buf, p.dst.buf, p.n, scale);
    Py_END_ALLOW_THREADS
    release(&p);
    Py_RETURN_NONE;
}

/* (src 2-byte codes, dst float32, factor, add): dst (+)= fn(src) * factor, without the GIL. */
static PyObject *run_decode(PyObject *args, decode_fn fn)
{
    PyObject *src, *dst;
    float factor;
    int add;
    Pair p;
    if (!PyArg_ParseTuple(args, "OOfp", &src, &dst, &factor, &add)) return NULL;
    if (take_pair(src, dst, 2, 4, &p) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    fn(p.src.buf, p.dst.buf, p.n, factor, add);
    Py_END_ALLOW_THREADS
    release(&p);
    Py_RETURN_NONE;
}

static PyObject *py_f32_to_f16(PyObject *self, PyObject *args)
{
    return run_encode(args, f16_encoder());
}

static PyObject *py_f16_to_f32(PyObject *self, PyObject *args)
{
    return run_decode(args, f16_decoder());
}

static PyObject *py_f32_to_bf16(PyObject *self, PyObject *args)
{
    return run_encode(args, f32_to_bf16_loop);
}

static PyObject *py_bf16_to_f32(PyObject *self, PyObject *args)
{
    return run_decode(args, bf16_to_f32_loop);
}

/* The largest |x| of float32 data in one pass (NaN if any is NaN): fp16's scale. */
static float absmax_plain(const float *s, Py_ssize_t n)
{
    float top = 0.0f;
    int nan = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        float a = fabsf(s[i]);
        top = a > top ? a : top;
        nan |= a != a;
    }
    return nan ? NAN : top;
}

#ifdef HAVE_X86
__attribute__((target("avx2")))
static float absmax_avx2(const float *s, Py_ssize_t n)
{
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 top = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_and_ps(_mm256_loadu_ps(s + i), magnitude);
        top = _mm256_max_ps(top, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    float lanes[8], rest = absmax_plain(s + i, n - i);
    _mm256_storeu_ps(lanes, top);
    if (_mm256_movemask_ps(nan) || rest != rest) return NAN;
    for (int k = 0; k < 8; k++) rest = lanes[k] > rest ? lanes[k] : rest;
    return rest;
}
#endif

static float absmax_loop(const float *s, Py_ssize_t n)
{
#ifdef HAVE_X86
    if (has_avx2()) return absmax_avx2(s, n);
#endif
    return absmax_plain(s, n);
}

static PyObject *py_f32_absmax(PyObject *self, PyObject *args)
{
    PyObject *src;
    Py_buffer b;
    float top;
    if (!PyArg_ParseTuple(args, "O", &src)) return NULL;
    if (PyObject_GetBuffer(src, &b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (b.len % 4) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "hpcdist casts: absmax wants float32 data");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    top = absmax_loop(b.buf, b.len / 4);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return PyFloat_FromDouble(top);
}

static PyObject *py_uses_f16c(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(has_f16c());
}

static PyObject *py_set_f16c(PyObject *self, PyObject *args)
{
    int on;  /* for the tests: 0 runs the portable loops on a CPU with F16C */
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
#ifdef HAVE_X86
    known = -1;
    if (on) has_f16c(); else known = 0;
#endif
    return PyBool_FromLong(has_f16c());
}

static PyMethodDef methods[] = {
    {"f32_to_f16", py_f32_to_f16, METH_VARARGS, "dst = float16(src * scale)"},
    {"f16_to_f32", py_f16_to_f32, METH_VARARGS, "dst (+)= float32(src) * factor"},
    {"f32_to_bf16", py_f32_to_bf16, METH_VARARGS, "dst = bfloat16(src * scale)"},
    {"bf16_to_f32", py_bf16_to_f32, METH_VARARGS, "dst (+)= float32(src) * factor"},
    {"f32_absmax", py_f32_absmax, METH_VARARGS, "max |x| of float32 data (nan if any nan)"},
    {"uses_f16c", py_uses_f16c, METH_NOARGS, "whether the float16 loops use F16C"},
    {"set_f16c", py_set_f16c, METH_VARARGS, "use F16C where the CPU has it (True) or not"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_casts", NULL, -1, methods};

PyMODINIT_FUNC PyInit__casts(void) { return PyModule_Create(&module); }
