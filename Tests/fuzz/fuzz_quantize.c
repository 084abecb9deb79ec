/* libFuzzer harness: attn_quantize_per_tensor and attn_dequantize_per_tensor
 * (seed 001's asymmetric per-tensor scheme). Any rank 0 to 8, any layout, every
 * float dtype, 2 to 8 bits. The formula is replayed in fp64 and must match
 * exactly (levels, scale, zero point); dequantization is held to the output
 * dtype's rounding. */
#include "fuzz_common.h"

static int64_t fz_levels_of(double x, double scale, double zero_point, double levels) {
    double level = nearbyint(x / scale + zero_point); /* the default rounding mode: half to even */
    return (int64_t)fmin(fmax(level, 0), levels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static attn_tensor x, q, out;
    fz_broken = "";

    attn_dtype dtype = fz_float_dtypes[fz_pick(&in, 4)];
    int rank = (int)fz_pick(&in, ATTN_MAX_RANK + 1);
    int64_t shape[ATTN_MAX_RANK];
    int64_t elements = 1;
    for (int a = 0; a < rank; a++) {
        shape[a] = elements > 512 ? 1 : fz_pick(&in, 5) + (fz_chance(&in, 95) ? 1 : 0);
        elements *= shape[a];
    }
    int bits = 2 + (int)fz_pick(&in, 7);
    int dequantize = fz_chance(&in, 40);
    int must_reject = 0;

    if (!dequantize) {
        fz_make(&in, &x, "x", dtype, rank, shape, 0, fz_chance(&in, 15));
        fz_make(&in, &q, "q", ATTN_DTYPE_U8, rank, shape, 1, 0);
        int finite = fz_all_finite(&x);
        switch (fz_chance(&in, 20) ? fz_pick(&in, 4) : 99) {
        case 0: bits = fz_chance(&in, 50) ? 1 : 9 + (int)fz_pick(&in, 60); fz_broken = "num_bits"; must_reject = 1; break;
        case 1: q.dtype = ATTN_DTYPE_I8; fz_broken = "q dtype"; must_reject = 1; break;
        case 2: if (rank > 0) { q.shape[0] += 1; fz_broken = "q shape"; must_reject = 1; } break;
        case 3: fz_corrupt_tensor(&in, &x); must_reject = 1; break;
        }
        if (!finite && elements > 0 && !must_reject) { fz_broken = "non-finite x"; must_reject = 1; }
        double scale = 0, zero_point = 0;
        int threads = 1 + (int)fz_pick(&in, 2);
        attn_set_num_threads(threads);
        fz_snapshot();
        if (fz_outcome(attn_quantize_per_tensor(&x, bits, &q, &scale, &zero_point), must_reject)) {
            if (elements > 0) {
                double low = INFINITY, high = -INFINITY;
                int64_t index[ATTN_MAX_RANK] = {0};
                do { double v = fz_get(&x, index); low = fmin(low, v); high = fmax(high, v); } while (fz_advance(&x, index));
                double levels = (double)((1 << bits) - 1);
                double want_scale = high > low ? (high - low) / levels : 1, want_zero = -low / want_scale;
                if (scale != want_scale || zero_point != want_zero) fz_fail("reference", "scale or zero_point");
                memset(index, 0, sizeof index);
                do {
                    if ((int64_t)fz_get(&q, index) != fz_levels_of(fz_get(&x, index), want_scale, want_zero, levels))
                        fz_fail("reference", "quantized level");
                } while (fz_advance(&x, index));
            }
        }
    } else {
        fz_make(&in, &q, "q", ATTN_DTYPE_U8, rank, shape, 0, 0);
        uint64_t salt = fz_byte(&in);
        FZ_FILL(&q, (double)((index[0] * 31 + (rank > 1 ? index[1] : 0) * 7 + salt) % 256));
        fz_make(&in, &out, "out", dtype, rank, shape, 1, 0);
        double scale = (double)(1 + fz_pick(&in, 64)) / 32.0, zero_point = (double)fz_pick(&in, 256) - 20.5;
        switch (fz_chance(&in, 20) ? fz_pick(&in, 3) : 99) {
        case 0: scale = fz_chance(&in, 50) ? NAN : INFINITY; fz_broken = "scale"; must_reject = 1; break;
        case 1: zero_point = NAN; fz_broken = "zero_point"; must_reject = 1; break;
        case 2: fz_corrupt_tensor(&in, &out); must_reject = 1; break;
        }
        fz_snapshot();
        if (fz_outcome(attn_dequantize_per_tensor(&q, scale, zero_point, &out), must_reject)) {
            if (elements > 0) {
                int64_t index[ATTN_MAX_RANK] = {0};
                double ulp = dtype == ATTN_DTYPE_F64 ? 0x1p-52 : dtype == ATTN_DTYPE_F32 ? 0x1p-23
                           : dtype == ATTN_DTYPE_F16 ? 0x1p-10 : 0x1p-7;
                do {
                    double want = scale * (fz_get(&q, index) - zero_point);
                    fz_expect_close(fz_get(&out, index), want, fabs(want) * ulp, "dequantized value");
                } while (fz_advance(&q, index));
            }
        }
    }
    fz_release_all();
    return 0;
}
