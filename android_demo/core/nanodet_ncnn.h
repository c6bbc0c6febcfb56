// The app's detector: the core's preprocess -> ncnn -> the core's postprocess, everything between a bitmap's
// BGR pixels and the boxes on screen. The JNI layer (app/src/main/jni) only marshals Java objects into this;
// the host test (tests/test_android_native.py) runs this same code against ncnn built from source.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nanodet_core.h"

namespace nanodet {

// ncnn's precision switches, decided by the export's precision exactly as nanodet_deploy/runtimes/ncnn.py
// (PRECISION_OPTIONS) does, so the phone runs what the parity gate verified: fp32 and int8 exports with fp16 and
// bf16 off (ncnn's default is on, which ARMv8.2 phones honour), fp16 exports with fp16 storage and fp32
// arithmetic. fast_fp16 is the user's opt-in: fp16 storage and arithmetic for the float layers of any export
// (faster on ARMv8.2 phones; not what was verified: the emulated phone measures what it costs, and a manifest
// can forbid it, ModelManifest.kt). A CPU without fp16 arithmetic (ARMv8.0) runs fp32 either way.
struct PrecisionOptions {
    bool use_fp16_storage = false;
    bool use_fp16_packed = false;
    bool use_fp16_arithmetic = false;
    bool use_bf16_storage = false;
    bool use_int8_inference = false;
    bool use_packing_layout = true;  // off on x86 for int8 models with INT8 depthwise convs (nanodet_ncnn.cpp says why)
};

// whether a .param's text has a depthwise convolution with INT8 weights (param 8, int8_scale_term, non-zero)
bool has_int8_depthwise(const std::string& param);

// false for a precision that is not fp32, fp16 or int8. int8_depthwise: has_int8_depthwise of the model
bool precision_options(const std::string& precision, bool fast_fp16, bool int8_depthwise, PrecisionOptions* options);

struct DetectorOptions {
    std::string input_name = "data";
    std::string output_name = "output";
    std::string precision;  // the manifest's: fp32, fp16 or int8
    bool fast_fp16 = false;
    bool use_gpu = false;
    int threads = 1;
};

class NcnnDetector {
public:
    NcnnDetector();
    ~NcnnDetector();
    NcnnDetector(const NcnnDetector&) = delete;
    NcnnDetector& operator=(const NcnnDetector&) = delete;

    // param: the .param text; weights: the .bin bytes (kept: ncnn references them). On failure returns false
    // and says why in *error.
    bool load(const ModelConfig& config, const DetectorOptions& options, std::string param,
              std::vector<unsigned char> weights, std::string* error);

    // interleaved BGR8 (row stride in bytes) -> detections in image pixels, best first; empty on failure with
    // the reason in *error. raw (optional): the network's output [num_points, channels] it decoded, for
    // comparisons with other kernels (core_cli's detect mode)
    std::vector<Detection> detect(const uint8_t* bgr, int width, int height, int stride, float score_threshold,
                                  std::string* error, std::vector<float>* raw = nullptr);

    // what runs, for the screen: "fp32", "int8", "fp16", with " + fast fp16" or " (GPU)"
    std::string running_precision() const;
    float last_inference_ms() const { return last_inference_ms_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    float last_inference_ms_ = 0.f;
};

}  // namespace nanodet
