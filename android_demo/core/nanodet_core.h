// NanoDet-Plus pre- and post-processing in plain C++17: no Android, no ncnn types in the interface.
//
// The same steps as nanodet_deploy.processing (Python), so the app gives the boxes the toolkit gives:
//   preprocess: NanoDet's resize matrix, OpenCV 5.0's bilinear warp reproduced bit for bit (see warp),
//               (x - mean) * (1 / std) in float32 as the Python table, BGR planar float [3, H, W];
//   decode: GFL integral over reg_max+1 bins per side at priors (x*s, y*s), boxes clamped to the input;
//   NMS: multi-label candidates (score > score_thr), per-class greedy NMS with IoU > iou_thr suppressing,
//        computed as torchvision's batched_nms does (float32, boxes offset per class), best max_dets kept;
//   boxes mapped back through the inverse resize matrix and clipped to the image.
// Every model constant comes from ModelConfig, which the app fills from the export's nanodet.json.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nanodet {

struct ModelConfig {  // no defaults on purpose: every value comes from the export's manifest
    int input_width = 0;
    int input_height = 0;
    int num_classes = 0;
    int reg_max = 0;
    std::vector<int> strides;
    std::array<double, 3> mean{};  // B, G, R, as the manifest writes them (rounded to float32 where Python does)
    std::array<double, 3> std{};
    bool keep_ratio = false;
    float score_threshold = 0.f;
    float iou_threshold = 0.f;
    int max_detections = 0;

    int num_points() const;                            // rows of the raw output
    int channels() const { return num_classes + 4 * (reg_max + 1); }
};

struct Detection {
    float x1, y1, x2, y2;  // original-image pixels
    float score;
    int label;
};

using Matrix3 = std::array<double, 9>;  // row-major 3x3

// NanoDet's get_resize_matrix: image (w, h) -> network input.
Matrix3 resize_matrix(int image_width, int image_height, const ModelConfig& config);

// Android's ARGB_8888 bitmap memory (R, G, B, A bytes; row stride in bytes) -> interleaved BGR8.
std::vector<uint8_t> bgr_from_rgba(const uint8_t* rgba, int width, int height, int stride);

// Interleaved BGR8 image (row stride in bytes) -> its pixels at the network input, BGR8 [H, W, 3] (contiguous,
// `warped`), by NanoDet's resize matrix (returned). This defines the toolkit's preprocessing: the bilinear
// cv2.warpAffine / cv2.warpPerspective of OpenCV 5.0 on x86 (INTER_LINEAR, constant black border), whose
// float32 kernel it reproduces bit for bit — inverse matrix in float32, source coordinates by one fused
// multiply-add, each interpolation step one fused multiply-add, round half to even — so the boxes do not depend
// on the OpenCV a machine has (5.1 moves 0.04 % of the values by one grey level). Python runs this code
// (nanodet_deploy.native) or its numpy twin (processing.warp_numpy); tests/test_processing.py holds them to
// OpenCV 5.0.0.93's output, saved per image.
Matrix3 warp(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config, uint8_t* warped);

// Which compilation of the warp's loops this CPU runs: "avx2+fma" (x86-64 with both) or "baseline". The same
// bytes either way (tests/test_android_core.py builds both).
const char* warp_kernels_name();

// Interleaved BGR8 image (row stride in bytes) -> planar float tensor [3, H, W]: normalise(warp(image)), bit for
// bit, computed in one pass; returns the matrix used.
Matrix3 preprocess_into(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config,
                        float* tensor);
std::vector<float> preprocess(const uint8_t* bgr, int width, int height, int stride, const ModelConfig& config,
                              Matrix3* matrix_out);

// The normalisation's float32 constants: mean[c] and inv_std[c] = float32(1 / std[c]); v -> (v - mean) * inv_std.
void normalisation(const ModelConfig& config, float* mean, float* inv_std);

// Warped interleaved BGR8 image [H, W, 3] (contiguous) -> planar float [3, H, W] as preprocess normalises it.
void normalise(const uint8_t* bgr, int width, int height, const ModelConfig& config, float* tensor);

// Raw output [num_points, channels] (class scores after sigmoid, then distance logits) -> detections in
// original-image pixels, best first. *non_finite gets the number of NaN / Inf values in raw; when there are
// any, nothing is detected: a broken model must not look like a working one.
std::vector<Detection> postprocess(const float* raw, const Matrix3& matrix, int image_width, int image_height,
                                   const ModelConfig& config, size_t* non_finite);

}  // namespace nanodet
