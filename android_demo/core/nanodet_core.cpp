#include "nanodet_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace nanodet {

int ModelConfig::num_points() const {
    int total = 0;
    for (int s : strides) total += ((input_width + s - 1) / s) * ((input_height + s - 1) / s);
    return total;
}

static Matrix3 multiply(const Matrix3& a, const Matrix3& b) {
    Matrix3 c{};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k) c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
    return c;
}

// cv::invert's closed form for 3x3 (DECOMP_LU): the adjugate times 1/det. warpPerspective inverts its matrix
// this way; the same arithmetic gives the same float32 coefficients below.
static Matrix3 inverse(const Matrix3& m) {
    const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                       m[2] * (m[3] * m[7] - m[4] * m[6]);
    const double d = det != 0 ? 1.0 / det : 0.0;
    return {(m[4] * m[8] - m[5] * m[7]) * d, (m[2] * m[7] - m[1] * m[8]) * d, (m[1] * m[5] - m[2] * m[4]) * d,
            (m[5] * m[6] - m[3] * m[8]) * d, (m[0] * m[8] - m[2] * m[6]) * d, (m[2] * m[3] - m[0] * m[5]) * d,
            (m[3] * m[7] - m[4] * m[6]) * d, (m[1] * m[6] - m[0] * m[7]) * d, (m[0] * m[4] - m[1] * m[3]) * d};
}

Matrix3 resize_matrix(int w, int h, const ModelConfig& config) {
    const double dw = config.input_width, dh = config.input_height;
    if (!config.keep_ratio) return {dw / w, 0, 0, 0, dh / h, 0, 0, 0, 1};
    const double ratio = (double(w) / h < dw / dh) ? dh / h : dw / w;
    const Matrix3 center{1, 0, -w / 2.0, 0, 1, -h / 2.0, 0, 0, 1};
    const Matrix3 scale{ratio, 0, 0, 0, ratio, 0, 0, 0, 1};
    const Matrix3 shift{1, 0, 0.5 * dw, 0, 1, 0.5 * dh, 0, 0, 1};
    return multiply(shift, multiply(scale, center));
}

std::vector<uint8_t> bgr_from_rgba(const uint8_t* rgba, int width, int height, int stride) {
    std::vector<uint8_t> bgr(size_t(width) * height * 3);
    for (int y = 0; y < height; ++y) {
        const uint8_t* row = rgba + size_t(y) * stride;
        uint8_t* out = bgr.data() + size_t(y) * width * 3;
        for (int x = 0; x < width; ++x) {
            out[x * 3 + 0] = row[x * 4 + 2];
            out[x * 3 + 1] = row[x * 4 + 1];
            out[x * 3 + 2] = row[x * 4 + 0];
        }
    }
    return bgr;
}

namespace {

// The warp's arithmetic is OpenCV 5.0's float32 bilinear kernel (see nanodet_core.h), written once as small loops
// over contiguous arrays that the compiler vectorises (-O3; -ffp-contract=off, so the only fused multiply-adds
// are the std::fma written here, where OpenCV's kernel has them). On x86-64 the loops are compiled twice, for the
// baseline ISA and for AVX2+FMA, and chosen at run time: without the FMA instruction std::fma is a library call.
//
// Work is planar: each source row the output needs is interpolated horizontally once per channel (neighbouring
// output rows share source rows), then output rows blend two of them vertically.

// Byte c of a little-endian 32-bit load of a BGR pixel (x86 and ARM Android are little-endian).
inline __attribute__((always_inline)) float channel_of(uint32_t pixel, int c) {
    return float(int((pixel >> (8 * c)) & 0xFF));
}

// One source row, horizontally: out[c * width + x] = fma(weight[x], right_c - left_c, left_c), where left[x] /
// right[x] hold the neighbour pixels' bytes (0 outside the image), gathered beforehand.
inline __attribute__((always_inline)) void interpolate_row(const uint32_t* left, const uint32_t* right,
                                                           const float* weight, int width, float* out) {
    for (int c = 0; c < 3; ++c) {
        float* row = out + size_t(c) * width;
        for (size_t x = 0; x < size_t(width); ++x) {
            const float a = channel_of(left[x], c);
            row[x] = std::fma(weight[x], channel_of(right[x], c) - a, a);
        }
    }
}

// Vertically: fma(weight, bottom - top, top), rounded half to even (the default rounding mode; adding and
// removing 1.5 * 2^23 rounds any |v| < 2^22 so, and vectorises everywhere), saturated to 0..255 as OpenCV stores.
inline __attribute__((always_inline)) float blend(float top, float bottom, float weight) {
    const float round_const = 12582912.f;
    const float v = std::fma(weight, bottom - top, top);
    return std::min(255.f, std::max(0.f, (v + round_const) - round_const));
}

// An output row as bytes, interleaved BGR (the warped image): blended per channel into `planes` (3 x width), then
// interleaved (a loop that stores every third byte does not vectorise; this is 1.4x faster).
inline __attribute__((always_inline)) void blend_to_bytes(const float* top, const float* bottom, float weight,
                                                          int width, uint8_t* planes, uint8_t* out) {
    const size_t n = size_t(width);
    for (size_t i = 0; i < 3 * n; ++i) planes[i] = uint8_t(blend(top[i], bottom[i], weight));
    for (size_t x = 0; x < n; ++x)
        out[x * 3] = planes[x], out[x * 3 + 1] = planes[n + x], out[x * 3 + 2] = planes[2 * n + x];
}

// An output row normalised into the planar tensor (channel c at out + c * plane): (v - mean) * inv_std, as
// normalise() computes it from the byte v.
inline __attribute__((always_inline)) void blend_to_tensor(const float* top, const float* bottom, float weight,
                                                           int width, const float* mean, const float* inv_std,
                                                           size_t plane, float* out) {
    for (int c = 0; c < 3; ++c) {
        const float *t = top + size_t(c) * width, *b = bottom + size_t(c) * width;
        float* o = out + c * plane;
        for (size_t x = 0; x < size_t(width); ++x) o[x] = (blend(t[x], b[x], weight) - mean[c]) * inv_std[c];
    }
}

struct WarpKernels {
    const char* name;
    void (*interpolate_row)(const uint32_t*, const uint32_t*, const float*, int, float*);
    void (*blend_to_bytes)(const float*, const float*, float, int, uint8_t*, uint8_t*);
    void (*blend_to_tensor)(const float*, const float*, float, int, const float*, const float*, size_t, float*);
};

#define NANODET_WARP_KERNELS(ATTRIBUTES, SUFFIX)                                                                 \
    ATTRIBUTES void interpolate_row_##SUFFIX(const uint32_t* l, const uint32_t* r, const float* w, int n,         \
                                             float* out) {                                                       \
        interpolate_row(l, r, w, n, out);                                                                        \
    }                                                                                                            \
    ATTRIBUTES void blend_to_bytes_##SUFFIX(const float* t, const float* b, float w, int n, uint8_t* planes,     \
                                            uint8_t* out) {                                                      \
        blend_to_bytes(t, b, w, n, planes, out);                                                                 \
    }                                                                                                            \
    ATTRIBUTES void blend_to_tensor_##SUFFIX(const float* t, const float* b, float w, int n, const float* mean,   \
                                             const float* inv_std, size_t plane, float* out) {                   \
        blend_to_tensor(t, b, w, n, mean, inv_std, plane, out);                                                  \
    }

NANODET_WARP_KERNELS(, baseline)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(NANODET_NO_SIMD_DISPATCH)
#define NANODET_X86_DISPATCH 1
NANODET_WARP_KERNELS(__attribute__((target("avx2,fma"))), avx2)
#endif

const WarpKernels& warp_kernels() {
    static const WarpKernels kernels = [] {
#if NANODET_X86_DISPATCH
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return WarpKernels{"avx2+fma", interpolate_row_avx2, blend_to_bytes_avx2, blend_to_tensor_avx2};
#endif
        return WarpKernels{"baseline", interpolate_row_baseline, blend_to_bytes_baseline, blend_to_tensor_baseline};
    }();
    return kernels;
}

// Where output column x (or row y) samples: its two neighbours' indices in the source, each clamped to -1..size
// (-1 and size stand for the black border beyond either edge), and the second neighbour's weight.
struct Tap {
    int first, second;
    float weight;
};

Tap tap(float coordinate, int size) {
    const int first = int(std::floor(coordinate));
    return {std::min(std::max(first, -1), size), std::min(std::max(first + 1, -1), size), coordinate - float(first)};
}

// The warp up to the output rows: calls emit(y, top, bottom, weight) for every output row y with the two
// horizontally interpolated source rows it blends (planar, 3 x W floats each) and the bottom one's weight.
template <class Emit>
Matrix3 warp_rows(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config, Emit emit) {
    const Matrix3 matrix = resize_matrix(width, height, config);
    // OpenCV's kernel works with the inverse matrix rounded to float32. A resize matrix only scales and shifts,
    // so its inverse has no shear or perspective terms: the source x of an output pixel depends on its column
    // only (fma(m0, x, m2), the row term y * 0 + m2 being m2) and the source y on its row only (y * m4 + m5 in
    // float32, unfused), and the divisor x * 0 + 1 is 1.
    const Matrix3 inv = inverse(matrix);
    const float m0 = float(inv[0]), m2 = float(inv[2]), m4 = float(inv[4]), m5 = float(inv[5]);
    const int W = config.input_width, H = config.input_height;

    // per output column: the two neighbours' byte offsets in a padded source row (one black pixel on each
    // side, and one more byte so that every neighbour can be loaded as 4 bytes) and the right one's weight
    std::vector<int> left(W), right(W);
    std::vector<float> weight(W);
    for (int x = 0; x < W; ++x) {
        const Tap t = tap(std::fma(m0, float(x), m2), width);
        left[x] = (t.first + 1) * 3, right[x] = (t.second + 1) * 3, weight[x] = t.weight;
    }
    const WarpKernels& kernels = warp_kernels();
    std::vector<uint8_t> padded(size_t(width + 2) * 3 + 1, 0);
    std::vector<uint32_t> left_pixels(W), right_pixels(W);
    // the two source rows the current output row blends; neighbouring output rows share them when the image is
    // enlarged, or one of them when it is reduced less than 2x
    std::vector<float> rows[2] = {std::vector<float>(size_t(3) * W), std::vector<float>(size_t(3) * W)};
    int row_of[2] = {-2, -2};  // source row held by each slot (-2: none)
    const auto source_row = [&](int r) -> const float* {
        for (int slot = 0; slot < 2; ++slot)
            if (row_of[slot] == r) return rows[slot].data();
        const int slot = row_of[0] == r - 1 ? 1 : 0;  // keep the row above: it is this output row's top
        row_of[slot] = r;
        float* out = rows[slot].data();
        if (r < 0 || r >= height) {  // outside the image: black, fma(w, 0 - 0, 0) = +0
            std::fill(out, out + size_t(3) * W, 0.f);
            return out;
        }
        std::memcpy(padded.data() + 3, bgr + size_t(r) * stride, size_t(width) * 3);
        for (int x = 0; x < W; ++x) {
            std::memcpy(&left_pixels[x], padded.data() + left[x], 4);
            std::memcpy(&right_pixels[x], padded.data() + right[x], 4);
        }
        kernels.interpolate_row(left_pixels.data(), right_pixels.data(), weight.data(), W, out);
        return out;
    };
    for (int y = 0; y < H; ++y) {
        const Tap t = tap(float(y) * m4 + m5, height);
        const float* top = source_row(t.first);
        emit(y, top, source_row(t.second), t.weight);
    }
    return matrix;
}

}  // namespace

const char* warp_kernels_name() { return warp_kernels().name; }

Matrix3 warp(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config, uint8_t* warped) {
    const int W = config.input_width;
    const WarpKernels& kernels = warp_kernels();
    std::vector<uint8_t> planes(size_t(3) * W);
    return warp_rows(bgr, width, height, stride, config, [&](int y, const float* top, const float* bottom, float w) {
        kernels.blend_to_bytes(top, bottom, w, W, planes.data(), warped + size_t(y) * W * 3);
    });
}

std::vector<float> preprocess(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config,
                              Matrix3* matrix_out) {
    std::vector<float> tensor(size_t(3) * config.input_width * config.input_height);
    const Matrix3 matrix = preprocess_into(bgr, width, height, stride, config, tensor.data());
    if (matrix_out) *matrix_out = matrix;
    return tensor;
}

Matrix3 preprocess_into(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config,
                        float* tensor) {
    // warp and normalise in one pass over the output rows, the bytes never stored (normalise() of warp()'s
    // bytes, bit for bit: the blended value is the byte, as a float)
    const int W = config.input_width;
    const size_t plane = size_t(W) * config.input_height;
    float mean[3], inv_std[3];
    normalisation(config, mean, inv_std);
    const WarpKernels& kernels = warp_kernels();
    return warp_rows(bgr, width, height, stride, config, [&](int y, const float* top, const float* bottom, float w) {
        kernels.blend_to_tensor(top, bottom, w, W, mean, inv_std, plane, tensor + size_t(y) * W);
    });
}

void normalisation(const ModelConfig& config, float* mean, float* inv_std) {
    // as nanodet_deploy.processing.normalise_numpy's table: (v - float32 mean) * float32(1 / std in double),
    // unfused, so every backend's input holds the same floats
    for (int c = 0; c < 3; ++c) mean[c] = float(config.mean[c]), inv_std[c] = float(1.0 / config.std[c]);
}

void normalise(const uint8_t* bgr, int width, int height, const ModelConfig& config, float* tensor) {
    float mean[3], inv_std[3];
    normalisation(config, mean, inv_std);
    const size_t plane = size_t(width) * height;
    for (int c = 0; c < 3; ++c)
        for (size_t i = 0; i < plane; ++i) tensor[c * plane + i] = (float(bgr[i * 3 + c]) - mean[c]) * inv_std[c];
}

namespace {

struct Candidate {
    int point;
    int label;
    float score;
    float box[4];  // input pixels
};

// exp(x) for x <= 0 in plain float32 arithmetic: Cephes' expf (x = n ln2 + r, |r| <= ln2 / 2, a degree-6
// polynomial in r, times 2^n). Measured on every float in [-87, 0] (1.1e9 values): within 1 ulp of the correctly
// rounded exp, 99.2 % equal to it, as glibc's expf (also within 1 ulp). Written out rather than called:
// - the compiler vectorises a loop of it (std::exp is one library call per value): with the sorting and NMS
//   below, decode+NMS of 40 val-dev raw outputs of the stock model on a 2-core Xeon takes 165 us instead of
//   310 us (median, best of 20 each; 207 us with postprocess's NaN / Inf check); the same detections, boxes
//   within 6.2e-5 pixels;
// - the same bits on every CPU and C library: no fused multiply-adds (-ffp-contract=off), no libm, so a phone
//   decodes the raw output to the very boxes this machine does (std::exp differs between glibc and bionic), and
//   nanodet_deploy.processing.exp_nonpositive repeats it in numpy, the same bits on 1e6 values.
inline float exp_nonpositive(float x) {
    x = std::max(x, -87.f);  // exp(-87) ~ 1.6e-38, still a normal float; a sum that holds exp(0) = 1 ignores it
    const float shifter = 12582912.f;  // 1.5 * 2^23: adding it rounds to a whole number (half to even)
    const float t = x * 1.44269504f + shifter;
    const float n = t - shifter;
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts: n * 0.693359375 is exact
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * (r * r) + r + 1.f;
    const int32_t n_bits = (__builtin_bit_cast(int32_t, t) - 0x4B400000) << 23;  // n sits in t's low mantissa bits
    return __builtin_bit_cast(float, __builtin_bit_cast(int32_t, y) + n_bits);    // y * 2^n
}

// A float's place in descending order as an unsigned integer: its bits, made to order as its value (negative
// numbers' bits reversed, the sign bit set on the others), inverted. -0 counts as +0 (+ 0.f), as comparing does.
inline uint32_t descending_key(float value) {
    const uint32_t bits = __builtin_bit_cast(uint32_t, value + 0.f);
    return ~(bits & 0x80000000u ? ~bits : bits | 0x80000000u);
}

// GFL integral: softmax over the bins of each side, expectation, times the stride; clamped to the input.
// e: room for 4 * bins floats.
void decode_point(const float* logits, float px, float py, float stride, int bins, float width, float height,
                  float* e, float* box) {
    for (int side = 0; side < 4; ++side) {
        const float* l = logits + side * bins;
        float top = l[0];
        for (int i = 1; i < bins; ++i) top = std::max(top, l[i]);
        for (int i = 0; i < bins; ++i) e[side * bins + i] = l[i] - top;
    }
    for (int k = 0; k < 4 * bins; ++k) e[k] = exp_nonpositive(e[k]);  // one loop over all sides: vectorised
    float distance[4];
    for (int side = 0; side < 4; ++side) {
        float sum = 0.f, weighted = 0.f;
        for (int i = 0; i < bins; ++i) {
            sum += e[side * bins + i];
            weighted += e[side * bins + i] * float(i);
        }
        distance[side] = weighted / sum * stride;
    }
    box[0] = std::min(std::max(px - distance[0], 0.f), width);
    box[1] = std::min(std::max(py - distance[1], 0.f), height);
    box[2] = std::min(std::max(px + distance[2], 0.f), width);
    box[3] = std::min(std::max(py + distance[3], 0.f), height);
}

// Candidates sorted before NMS starts: the 100th kept box sits at candidate rank 453 (median) / 717 (max) of
// ~1,800 on val-dev (stock model), so sorting the best 512 first and the rest only when NMS reaches them does a
// third of the sorting on most images.
constexpr size_t kFirstSorted = 512;

}  // namespace

std::vector<Detection> postprocess(const float* raw, const Matrix3& matrix, int image_width, int image_height,
                                   const ModelConfig& config, size_t* non_finite) {
    const int C = config.num_classes, bins = config.reg_max + 1, channels = config.channels();
    *non_finite = 0;
    const float threshold = config.score_threshold;
    std::vector<float> exp_scratch(4 * size_t(bins));
    std::vector<Candidate> candidates;
    candidates.reserve(4096);
    size_t broken = 0;
    int point = 0;
    for (int s : config.strides) {
        const int fw = (config.input_width + s - 1) / s, fh = (config.input_height + s - 1) / s;
        for (int gy = 0; gy < fh; ++gy) {
            for (int gx = 0; gx < fw; ++gx, ++point) {
                const float* row = raw + size_t(point) * channels;
                // most points hold no candidate (~80 % on val-dev, stock model): a branch-free count first,
                // which the compiler vectorises at -O3, then the per-class loop only where something passes
                int passing = 0;
                for (int c = 0; c < C; ++c) passing += row[c] > threshold;
                // NaN / Inf anywhere are found in the same pass over the output (Python's second pass, np.isfinite,
                // cost 0.25 ms per frame right after inference: median of 75 frames interleaved with three
                // runtimes; this loop ~40 us when the output is in cache): an exponent of all ones carries into
                // the sign bit when one exponent step is added
                uint32_t exponents = 0;
                for (int k = 0; k < channels; ++k)
                    exponents |= (__builtin_bit_cast(uint32_t, row[k]) & 0x7F800000u) + 0x00800000u;
                if (exponents & 0x80000000u)
                    for (int k = 0; k < channels; ++k) broken += !std::isfinite(row[k]);
                if (passing == 0 || broken) continue;
                float box[4];
                decode_point(row + C, float(gx * s), float(gy * s), float(s), bins, float(config.input_width),
                             float(config.input_height), exp_scratch.data(), box);
                for (int c = 0; c < C; ++c)
                    if (row[c] > threshold) candidates.push_back({point, c, row[c], {box[0], box[1], box[2], box[3]}});
            }
        }
    }
    if (broken) {  // a broken model must not look like a working one
        *non_finite = broken;
        return {};
    }
    // best first, equal scores in (point, class) order: one integer key per candidate, sorted ascending
    std::vector<uint64_t> order(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i)
        order[i] = (uint64_t(descending_key(candidates[i].score)) << 32) | i;
    size_t sorted = std::min(order.size(), kFirstSorted);
    std::nth_element(order.begin(), order.begin() + sorted, order.end());
    std::sort(order.begin(), order.begin() + sorted);

    // torchvision's batched_nms: boxes offset by label * (max coordinate + 1) so classes never overlap,
    // IoU in float32 on the offset boxes (the offset changes the rounding: it is kept for identical results);
    // a box is only compared with the kept boxes of its own class
    float max_coordinate = 0.f;
    for (const Candidate& c : candidates)
        for (float v : c.box) max_coordinate = std::max(max_coordinate, v);
    const float offset_unit = max_coordinate + 1.f;
    const auto shifted = [&](int index, float* box) {
        const float offset = float(candidates[index].label) * offset_unit;
        for (int k = 0; k < 4; ++k) box[k] = candidates[index].box[k] + offset;
        return (box[2] - box[0]) * (box[3] - box[1]);
    };
    std::vector<int> kept;
    std::vector<std::vector<int>> kept_of_class(C);
    for (size_t rank = 0; rank < order.size() && int(kept.size()) < config.max_detections; ++rank) {
        if (rank == sorted) {  // NMS needs more than the first sorted: sort the rest
            std::sort(order.begin() + sorted, order.end());
            sorted = order.size();
        }
        const int index = int(uint32_t(order[rank]));
        float a[4], b[4];
        const float area_a = shifted(index, a);
        bool suppressed = false;
        for (int k : kept_of_class[candidates[index].label]) {
            const float area_b = shifted(k, b);
            const float w = std::min(a[2], b[2]) - std::max(a[0], b[0]);
            const float h = std::min(a[3], b[3]) - std::max(a[1], b[1]);
            const float inter = std::max(w, 0.f) * std::max(h, 0.f);
            if (inter / (area_a + area_b - inter) > config.iou_threshold) {
                suppressed = true;
                break;
            }
        }
        if (!suppressed) {
            kept.push_back(index);
            kept_of_class[candidates[index].label].push_back(index);
        }
    }

    // back to the image: the four corners through the inverse resize matrix, their bounding box, clipped
    const Matrix3 inv = inverse(matrix);
    std::vector<Detection> detections;
    detections.reserve(kept.size());
    for (int index : kept) {
        const Candidate& c = candidates[index];
        const double corners[4][2] = {{c.box[0], c.box[1]}, {c.box[2], c.box[3]}, {c.box[0], c.box[3]},
                                      {c.box[2], c.box[1]}};
        double x1 = 1e300, y1 = 1e300, x2 = -1e300, y2 = -1e300;
        for (const auto& p : corners) {
            const double z = inv[6] * p[0] + inv[7] * p[1] + inv[8];
            const double x = (inv[0] * p[0] + inv[1] * p[1] + inv[2]) / z;
            const double y = (inv[3] * p[0] + inv[4] * p[1] + inv[5]) / z;
            x1 = std::min(x1, x), y1 = std::min(y1, y), x2 = std::max(x2, x), y2 = std::max(y2, y);
        }
        const auto clip = [](double v, double hi) { return float(std::min(std::max(v, 0.0), hi)); };
        detections.push_back({clip(x1, image_width), clip(y1, image_height), clip(x2, image_width),
                              clip(y2, image_height), c.score, c.label});
    }
    return detections;
}

}  // namespace nanodet
