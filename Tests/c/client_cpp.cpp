// A C++ program built against the installed attnkit (find_package) through attnkit.hpp:
// SDPA and varlen flash attention against a plain fp64 reference written here, a strided
// view, std::span cu_seqlens, and attnkit::error from bad calls. Exit code 0: every check passed.
#include <attnkit.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

static int failures = 0;
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);     \
            std::fprintf(stderr, __VA_ARGS__);                            \
            std::fprintf(stderr, "\n");                                   \
            failures++;                                                   \
        }                                                                 \
    } while (0)

// Fixed pseudo-random values in [-1, 1).
static std::vector<float> values(std::size_t count, std::uint32_t seed) {
    std::vector<float> out(count);
    for (auto &x : out) {
        seed = seed * 1664525u + 1013904223u;
        x = static_cast<float>(seed >> 8) / static_cast<float>(1 << 23) - 1.0f;
    }
    return out;
}

// One head's attention in fp64: q [L, D] at q_at(i, d), k, v [S, D]; allowed(i, j) masks keys.
template <class Q, class K, class V, class Allowed>
static void reference_head(int L, int S, int D, double scale, Q q_at, K k_at, V v_at, Allowed allowed,
                           std::vector<double> &out /* L x D */) {
    out.assign(static_cast<std::size_t>(L) * D, 0.0);
    std::vector<double> p(S);
    for (int i = 0; i < L; i++) {
        double top = -INFINITY;
        for (int j = 0; j < S; j++) {
            double dot = 0;
            for (int d = 0; d < D; d++) dot += q_at(i, d) * k_at(j, d);
            p[j] = allowed(i, j) ? dot * scale : -INFINITY;
            top = std::fmax(top, p[j]);
        }
        if (top == -INFINITY) continue;   // nothing to attend: 0
        double sum = 0;
        for (int j = 0; j < S; j++) sum += p[j] = p[j] == -INFINITY ? 0 : std::exp(p[j] - top);
        for (int j = 0; j < S; j++)
            for (int d = 0; d < D; d++) out[i * D + d] += p[j] / sum * v_at(j, d);
    }
}

static void test_sdpa() {
    // query (B=2, H=2, L=5, E=8); key/value (2, 2, S=7, 8); causal (top-left); value read through
    // a transposed view: its memory is (B, S, H, E).
    const int B = 2, H = 2, L = 5, S = 7, E = 8;
    auto q = values(B * H * L * E, 1), k = values(B * H * S * E, 2), v = values(B * S * H * E, 3);
    std::vector<float> out(B * H * L * E, -7.0f), lse(B * H * L, -7.0f);
    attnkit::tensor tq(q.data(), {B, H, L, E}), tk(k.data(), {B, H, S, E});
    attnkit::tensor tv(v.data(), {B, H, S, E}, {S * H * E, E, H * E, 1});
    attnkit::tensor to(out.data(), {B, H, L, E}), tl(lse.data(), {B, H, L});
    attnkit::sdpa_options options;
    options.is_causal = true;
    attnkit::sdpa_forward(options, tq, tk, tv, to, nullptr, &tl);
    double worst = 0;
    std::vector<double> want;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            reference_head(L, S, E, 1 / std::sqrt(double(E)),
                           [&](int i, int d) { return double(q[((b * H + h) * L + i) * E + d]); },
                           [&](int j, int d) { return double(k[((b * H + h) * S + j) * E + d]); },
                           [&](int j, int d) { return double(v[((b * S + j) * H + h) * E + d]); },
                           [](int i, int j) { return j <= i; }, want);
            for (int i = 0; i < L * E; i++) worst = std::fmax(worst, std::fabs(out[(b * H + h) * L * E + i] - want[i]));
        }
    CHECK(worst <= 1e-5, "sdpa: max error %.3e against fp64", worst);
    CHECK(std::isfinite(lse[0]) && lse[0] != -7.0f, "sdpa: lse written");
}

static void test_varlen() {
    // Two sequences (3 and 6 tokens), 2 query heads sharing 1 KV head (GQA), causal (bottom-right:
    // equal lengths, so query i sees keys <= i), cu_seqlens through std::span<const int32_t>.
    const int total = 9, Hq = 2, Hk = 1, D = 4;
    const std::int32_t cu[] = {0, 3, 9};
    auto q = values(total * Hq * D, 4), k = values(total * Hk * D, 5), v = values(total * Hk * D, 6);
    std::vector<float> out(total * Hq * D, -7.0f);
    attnkit::tensor tq(q.data(), {total, Hq, D}), tk(k.data(), {total, Hk, D}), tv(v.data(), {total, Hk, D});
    attnkit::tensor to(out.data(), {total, Hq, D});
    attnkit::flash_options options;
    options.causal = true;
    attnkit::flash_varlen_forward(options, tq, tk, tv, std::span<const std::int32_t>(cu),
                                  std::span<const std::int32_t>(cu), 6, 6, to);
    double worst = 0;
    std::vector<double> want;
    for (int s = 0; s < 2; s++)
        for (int h = 0; h < Hq; h++) {
            int start = cu[s], n = cu[s + 1] - cu[s];
            reference_head(n, n, D, 1 / std::sqrt(double(D)),
                           [&](int i, int d) { return double(q[((start + i) * Hq + h) * D + d]); },
                           [&](int j, int d) { return double(k[(start + j) * D + d]); },
                           [&](int j, int d) { return double(v[(start + j) * D + d]); },
                           [](int i, int j) { return j <= i; }, want);
            for (int i = 0; i < n; i++)
                for (int d = 0; d < D; d++)
                    worst = std::fmax(worst, std::fabs(out[((start + i) * Hq + h) * D + d] - want[i * D + d]));
        }
    CHECK(worst <= 1e-5, "varlen: max error %.3e against fp64", worst);
}

static void test_errors() {
    std::vector<float> q(2 * 4 * 8), k(2 * 4 * 8), out(2 * 4 * 8, -7.0f);
    attnkit::tensor tq(q.data(), {1, 2, 4, 8}), tk(k.data(), {1, 2, 4, 8}), bad(k.data(), {1, 2, 4, 7});
    attnkit::tensor to(out.data(), {1, 2, 4, 8});
    bool caught = false;
    try {
        attnkit::sdpa_forward({}, tq, bad, tk, to);
    } catch (const attnkit::error &e) {
        caught = true;
        CHECK(e.status() == ATTN_ERR_SHAPE, "status %s", e.status_name());
        CHECK(std::strstr(e.what(), "key") != nullptr, "message names the argument: %s", e.what());
        CHECK(std::strcmp(e.what(), attn_last_error()) == 0, "message is attn_last_error()'s");
    }
    CHECK(caught, "a key with the wrong head dim must throw attnkit::error");
    CHECK(out[0] == -7.0f, "a refused call writes nothing");

    caught = false;
    try {
        attnkit::set_num_threads(0);
    } catch (const attnkit::error &e) {
        caught = e.status() == ATTN_ERR_INVALID_ARGUMENT;
    }
    CHECK(caught, "set_num_threads(0) must throw ATTN_ERR_INVALID_ARGUMENT");

    caught = false;
    const std::int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    try {
        attnkit::tensor too_deep(q.data(), std::span<const std::int64_t>(nine));
    } catch (const attnkit::error &e) {
        caught = e.status() == ATTN_ERR_SHAPE;
    }
    CHECK(caught, "a view of rank 9 must throw ATTN_ERR_SHAPE");
}

int main() {
    CHECK(attnkit::version_number() == ATTNKIT_VERSION_NUMBER, "version %u", attnkit::version_number());
    CHECK(attnkit::num_threads() >= 1, "threads");
    try {
        test_sdpa();
        test_varlen();
        test_errors();
    } catch (const attnkit::error &e) {
        std::fprintf(stderr, "FAIL unexpected attnkit::error %s: %s\n", e.status_name(), e.what());
        return 1;
    }
    if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
    else std::printf("C++ client: SDPA, varlen, errors OK (isa %d)\n", attnkit::isa());
    return failures ? 1 : 0;
}
