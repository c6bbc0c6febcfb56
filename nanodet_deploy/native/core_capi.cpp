// C interface of the Android app's pre/post-processing (android_demo/core/nanodet_core) for the toolkit:
// nanodet_deploy/native/__init__.py loads this library with ctypes, so Python and the phone run one C++
// implementation of NanoDet's preprocessing, GFL decoding and NMS. Built at install time (setup.py), optional:
// without it the toolkit uses the numpy implementation in nanodet_deploy/processing.py.
#include "nanodet_core.h"

#include <algorithm>
#include <cstdint>
#include <exception>

extern "C" {

// mirrors nanodet_deploy.native.Config (ctypes)
struct nd_config {
    int input_width, input_height, num_classes, reg_max;
    const int* strides;
    int num_strides;
    double mean[3], std[3];
    int keep_ratio;
    float score_threshold, iou_threshold;
    int max_detections;
};

}  // extern "C"

namespace {

nanodet::ModelConfig to_model_config(const nd_config& c) {
    nanodet::ModelConfig config;
    config.input_width = c.input_width;
    config.input_height = c.input_height;
    config.num_classes = c.num_classes;
    config.reg_max = c.reg_max;
    config.strides.assign(c.strides, c.strides + c.num_strides);
    for (int i = 0; i < 3; ++i) config.mean[i] = c.mean[i], config.std[i] = c.std[i];
    config.keep_ratio = c.keep_ratio != 0;
    config.score_threshold = c.score_threshold;
    config.iou_threshold = c.iou_threshold;
    config.max_detections = c.max_detections;
    return config;
}

}  // namespace

extern "C" {

// The interface's version: nanodet_deploy.native uses a library only if it matches (2: nd_postprocess counts
// NaN / Inf; an older library's nd_postprocess would ignore the pointer and let a broken output through).
int nd_interface_version() { return 2; }

// "avx2+fma" or "baseline": the warp loops this CPU runs.
const char* nd_warp_kernels() { return nanodet::warp_kernels_name(); }

// BGR8 image (row stride in bytes) -> its pixels at the network input, BGR8 [H, W, 3] (warped_out, contiguous),
// and the resize matrix used (matrix_out, row-major 3x3). Returns 0, or -1 if C++ threw (out of memory).
int nd_warp(const uint8_t* bgr, int width, int height, int stride, const nd_config* c, uint8_t* warped_out,
            double* matrix_out) {
    try {
        const nanodet::Matrix3 matrix = nanodet::warp(bgr, width, height, stride, to_model_config(*c), warped_out);
        std::copy(matrix.begin(), matrix.end(), matrix_out);
        return 0;
    } catch (const std::exception&) {
        return -1;
    }
}

// BGR8 image (row stride in bytes) -> normalised planar float tensor [3, H, W] (tensor_out): nd_normalise of
// nd_warp's pixels, in one pass; and the resize matrix. Returns 0, or -1 if C++ threw (out of memory).
int nd_preprocess(const uint8_t* bgr, int width, int height, int stride, const nd_config* c, float* tensor_out,
                  double* matrix_out) {
    try {
        const nanodet::Matrix3 matrix =
            nanodet::preprocess_into(bgr, width, height, stride, to_model_config(*c), tensor_out);
        std::copy(matrix.begin(), matrix.end(), matrix_out);
        return 0;
    } catch (const std::exception&) {
        return -1;
    }
}

// Warped BGR8 image [H, W, 3] (contiguous) -> normalised planar float tensor [3, H, W] (tensor_out).
void nd_normalise(const uint8_t* bgr, const nd_config* c, float* tensor_out) {
    nanodet::normalise(bgr, c->input_width, c->input_height, to_model_config(*c), tensor_out);
}

// Raw output [num_points, channels] -> at most max_detections detections, best first, in original-image
// pixels: boxes_out [K, 4], scores_out [K], labels_out [K]; the number of NaN / Inf values in raw
// (non_finite_out; no detections when there are any). Returns K, or -1 if C++ threw.
int nd_postprocess(const float* raw, const double* matrix, int image_width, int image_height, const nd_config* c,
                   float* boxes_out, float* scores_out, int64_t* labels_out, int64_t* non_finite_out) {
    try {
        nanodet::Matrix3 m;
        std::copy(matrix, matrix + 9, m.begin());
        size_t non_finite = 0;
        const std::vector<nanodet::Detection> detections =
            nanodet::postprocess(raw, m, image_width, image_height, to_model_config(*c), &non_finite);
        *non_finite_out = int64_t(non_finite);
        const int count = std::min<int>(int(detections.size()), c->max_detections);
        for (int i = 0; i < count; ++i) {
            const nanodet::Detection& d = detections[i];
            boxes_out[i * 4 + 0] = d.x1, boxes_out[i * 4 + 1] = d.y1;
            boxes_out[i * 4 + 2] = d.x2, boxes_out[i * 4 + 3] = d.y2;
            scores_out[i] = d.score;
            labels_out[i] = d.label;
        }
        return count;
    } catch (const std::exception&) {
        return -1;
    }
}

}  // extern "C"
