#include "nanodet_core.h"

#include <algorithm>
#include <cmath>
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

std::vector<float> preprocess(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config,
                              Matrix3* matrix_out) {
    const Matrix3 matrix = resize_matrix(width, height, config);
    if (matrix_out) *matrix_out = matrix;
    // OpenCV's kernel works with the inverse matrix rounded to float32
    const Matrix3 inv = inverse(matrix);
    float m[9];
    for (int i = 0; i < 9; ++i) m[i] = float(inv[i]);
    const int W = config.input_width, H = config.input_height;
    std::vector<uint8_t> warped(size_t(3) * W * H);
    for (int y = 0; y < H; ++y) {
        // per row in float32, unfused (this file is built with -ffp-contract=off)
        const float row_x = float(y) * m[1] + m[2], row_y = float(y) * m[4] + m[5], row_w = float(y) * m[7] + m[8];
        for (int x = 0; x < W; ++x) {
            const float w = std::fma(m[6], float(x), row_w);
            const float sx = std::fma(m[0], float(x), row_x) / w;
            const float sy = std::fma(m[3], float(x), row_y) / w;
            const int x0 = int(std::floor(sx)), y0 = int(std::floor(sy));
            const float ax = sx - float(x0), ay = sy - float(y0);
            // the four neighbours; outside the image they are the constant border, 0 (black)
            float p[2][2][3];
            for (int dy = 0; dy < 2; ++dy) {
                for (int dx = 0; dx < 2; ++dx) {
                    const int px = x0 + dx, py = y0 + dy;
                    const bool inside = px >= 0 && py >= 0 && px < width && py < height;
                    const uint8_t* pixel = inside ? bgr + size_t(py) * stride + size_t(px) * 3 : nullptr;
                    for (int c = 0; c < 3; ++c) p[dy][dx][c] = inside ? float(pixel[c]) : 0.f;
                }
            }
            for (int c = 0; c < 3; ++c) {
                const float top = std::fma(ax, p[0][1][c] - p[0][0][c], p[0][0][c]);
                const float bottom = std::fma(ax, p[1][1][c] - p[1][0][c], p[1][0][c]);
                const float value = std::fma(ay, bottom - top, top);
                // to uint8 as OpenCV stores it: round half to even (the default rounding mode), saturate
                warped[(size_t(y) * W + x) * 3 + c] = uint8_t(std::min(255.f, std::max(0.f, std::nearbyint(value))));
            }
        }
    }
    std::vector<float> tensor(size_t(3) * W * H);
    normalise(warped.data(), W, H, config, tensor.data());
    return tensor;
}

void normalise(const uint8_t* bgr, int width, int height, const ModelConfig& config, float* tensor) {
    // as nanodet_deploy.processing._normaliser_table: (v - float32 mean) * float32(1 / std in double), one
    // table per channel, so every backend's input holds the same floats
    float table[3][256];
    for (int c = 0; c < 3; ++c) {
        const float mean = float(config.mean[c]), inv_std = float(1.0 / config.std[c]);
        for (int v = 0; v < 256; ++v) table[c][v] = (float(v) - mean) * inv_std;
    }
    const size_t plane = size_t(width) * height;
    for (size_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) tensor[c * plane + i] = table[c][bgr[i * 3 + c]];
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
