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

// GFL integral: softmax over the bins of each side, expectation, times the stride; clamped to the input.
void decode_point(const float* logits, float px, float py, float stride, int bins, float width, float height,
                  float* box) {
    float distance[4];
    for (int side = 0; side < 4; ++side) {
        const float* l = logits + side * bins;
        const float top = *std::max_element(l, l + bins);
        float sum = 0.f, weighted = 0.f;
        for (int i = 0; i < bins; ++i) {
            const float e = std::exp(l[i] - top);
            sum += e;
            weighted += e * float(i);
        }
        distance[side] = weighted / sum * stride;
    }
    box[0] = std::min(std::max(px - distance[0], 0.f), width);
    box[1] = std::min(std::max(py - distance[1], 0.f), height);
    box[2] = std::min(std::max(px + distance[2], 0.f), width);
    box[3] = std::min(std::max(py + distance[3], 0.f), height);
}

}  // namespace

std::vector<Detection> postprocess(const float* raw, const Matrix3& matrix, int image_width, int image_height,
                                   const ModelConfig& config) {
    const int C = config.num_classes, bins = config.reg_max + 1, channels = config.channels();
    std::vector<Candidate> candidates;
    int point = 0;
    for (int s : config.strides) {
        const int fw = (config.input_width + s - 1) / s, fh = (config.input_height + s - 1) / s;
        for (int gy = 0; gy < fh; ++gy) {
            for (int gx = 0; gx < fw; ++gx, ++point) {
                const float* row = raw + size_t(point) * channels;
                // most points hold no candidate (~80 % on val-dev, stock model): a branch-free count first,
                // which the compiler vectorises at -O3, then the per-class loop only where something passes
                // (decode+NMS 0.87 -> 0.63 ms per val-dev image, -O2 -> -O3 0.63 -> 0.50 ms)
                int passing = 0;
                for (int c = 0; c < C; ++c) passing += row[c] > config.score_threshold;
                if (passing == 0) continue;
                bool decoded = false;
                float box[4];
                for (int c = 0; c < C; ++c) {
                    if (!(row[c] > config.score_threshold)) continue;
                    if (!decoded) {
                        decode_point(row + C, float(gx * s), float(gy * s), float(s), bins,
                                     float(config.input_width), float(config.input_height), box);
                        decoded = true;
                    }
                    candidates.push_back({point, c, row[c], {box[0], box[1], box[2], box[3]}});
                }
            }
        }
    }
    // best first; equal scores keep their (point, class) order
    std::vector<int> order(candidates.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return candidates[a].score > candidates[b].score; });

    // torchvision's batched_nms: boxes offset by label * (max coordinate + 1) so classes never overlap,
    // IoU in float32 on the offset boxes (the offset changes the rounding: it is kept for identical results)
    float max_coordinate = 0.f;
    for (const Candidate& c : candidates)
        for (float v : c.box) max_coordinate = std::max(max_coordinate, v);
    const float offset_unit = max_coordinate + 1.f;
    std::vector<std::array<float, 4>> shifted(candidates.size());
    std::vector<float> areas(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
        const float offset = float(candidates[i].label) * offset_unit;
        for (int k = 0; k < 4; ++k) shifted[i][k] = candidates[i].box[k] + offset;
        areas[i] = (shifted[i][2] - shifted[i][0]) * (shifted[i][3] - shifted[i][1]);
    }
    std::vector<int> kept;
    for (int index : order) {
        if (int(kept.size()) >= config.max_detections) break;
        const auto& a = shifted[index];
        bool suppressed = false;
        for (int k : kept) {
            if (candidates[k].label != candidates[index].label) continue;  // offset boxes never overlap
            const auto& b = shifted[k];
            const float w = std::min(a[2], b[2]) - std::max(a[0], b[0]);
            const float h = std::min(a[3], b[3]) - std::max(a[1], b[1]);
            const float inter = std::max(w, 0.f) * std::max(h, 0.f);
            if (inter / (areas[index] + areas[k] - inter) > config.iou_threshold) {
                suppressed = true;
                break;
            }
        }
        if (!suppressed) kept.push_back(index);
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
