// JNI layer: Android bitmaps in, ncnn inference, the shared detector core (android_demo/core) for
// preprocessing, decoding and NMS. Every model constant arrives from nanodet.json through NanoDetNative.load.
#include <android/asset_manager_jni.h>
#include <android/bitmap.h>
#include <android/log.h>
#include <jni.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpu.h"
#include "nanodet_core.h"
#include "net.h"

#define LOGE(...) __android_log_print(ANDROID_LOG_ERROR, "nanodet", __VA_ARGS__)

namespace {

struct Model {
    ncnn::Net net;
    nanodet::ModelConfig config;
    std::string input_name, output_name;
};

std::mutex g_mutex;
std::unique_ptr<Model> g_model;
float g_last_inference_ms = 0.f;

std::string to_string(JNIEnv* env, jstring value) {
    const char* chars = env->GetStringUTFChars(value, nullptr);
    std::string out(chars);
    env->ReleaseStringUTFChars(value, chars);
    return out;
}

}  // namespace

extern "C" JNIEXPORT jboolean JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_load(
    JNIEnv* env, jobject, jobject asset_manager, jstring param_file, jstring bin_file, jstring input_name,
    jstring output_name, jint input_width, jint input_height, jint num_classes, jint reg_max, jintArray strides,
    jfloatArray mean, jfloatArray std, jboolean keep_ratio, jfloat iou_threshold, jint max_detections,
    jboolean int8, jboolean use_gpu, jint threads) {
    auto model = std::make_unique<Model>();
    nanodet::ModelConfig& c = model->config;
    c.input_width = input_width;
    c.input_height = input_height;
    c.num_classes = num_classes;
    c.reg_max = reg_max;
    c.keep_ratio = keep_ratio;
    c.iou_threshold = iou_threshold;
    c.max_detections = max_detections;
    const jsize n = env->GetArrayLength(strides);
    c.strides.assign(n, 0);
    env->GetIntArrayRegion(strides, 0, n, c.strides.data());
    env->GetFloatArrayRegion(mean, 0, 3, c.mean.data());
    env->GetFloatArrayRegion(std, 0, 3, c.std.data());
    model->input_name = to_string(env, input_name);
    model->output_name = to_string(env, output_name);

    model->net.opt.num_threads = threads;
    model->net.opt.use_vulkan_compute = use_gpu && ncnn::get_gpu_count() > 0;
    model->net.opt.use_int8_inference = int8;
    AAssetManager* assets = AAssetManager_fromJava(env, asset_manager);
    const std::string param = to_string(env, param_file), bin = to_string(env, bin_file);
    if (model->net.load_param(assets, param.c_str()) != 0 || model->net.load_model(assets, bin.c_str()) != 0) {
        LOGE("ncnn could not load %s / %s", param.c_str(), bin.c_str());
        return JNI_FALSE;
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    g_model = std::move(model);
    return JNI_TRUE;
}

extern "C" JNIEXPORT jfloatArray JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_detect(
    JNIEnv* env, jobject, jobject bitmap, jfloat score_threshold) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_model) return env->NewFloatArray(0);
    AndroidBitmapInfo info;
    void* pixels = nullptr;
    if (AndroidBitmap_getInfo(env, bitmap, &info) != 0 || info.format != ANDROID_BITMAP_FORMAT_RGBA_8888 ||
        AndroidBitmap_lockPixels(env, bitmap, &pixels) != 0) {
        LOGE("detect: needs an ARGB_8888 bitmap");
        return env->NewFloatArray(0);
    }
    // RGBA -> BGR, the channel order NanoDet was trained with
    std::vector<uint8_t> bgr(size_t(info.width) * info.height * 3);
    for (uint32_t y = 0; y < info.height; ++y) {
        const uint8_t* row = static_cast<const uint8_t*>(pixels) + size_t(y) * info.stride;
        uint8_t* out = bgr.data() + size_t(y) * info.width * 3;
        for (uint32_t x = 0; x < info.width; ++x) {
            out[x * 3 + 0] = row[x * 4 + 2];
            out[x * 3 + 1] = row[x * 4 + 1];
            out[x * 3 + 2] = row[x * 4 + 0];
        }
    }
    AndroidBitmap_unlockPixels(env, bitmap);

    Model& m = *g_model;
    nanodet::ModelConfig config = m.config;
    config.score_threshold = score_threshold;
    nanodet::Matrix3 matrix;
    const std::vector<float> tensor = nanodet::preprocess(bgr.data(), int(info.width), int(info.height),
                                                          int(info.width) * 3, config, &matrix);
    // planar [3, H, W] into ncnn's channel-aligned Mat
    ncnn::Mat input(config.input_width, config.input_height, 3);
    const size_t plane = size_t(config.input_width) * config.input_height;
    for (int c = 0; c < 3; ++c) std::memcpy(input.channel(c), tensor.data() + c * plane, plane * sizeof(float));

    const auto start = std::chrono::steady_clock::now();
    ncnn::Mat output;
    {
        ncnn::Extractor extractor = m.net.create_extractor();
        extractor.input(m.input_name.c_str(), input);
        extractor.extract(m.output_name.c_str(), output);
    }
    g_last_inference_ms = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (output.h != config.num_points() || output.w != config.channels()) {
        LOGE("output is %d x %d, the manifest says %d x %d", output.h, output.w, config.num_points(),
             config.channels());
        return env->NewFloatArray(0);
    }
    const auto detections = nanodet::postprocess(static_cast<const float*>(output.data), matrix, int(info.width),
                                                 int(info.height), config);
    std::vector<float> flat;
    flat.reserve(detections.size() * 6);
    for (const auto& d : detections) flat.insert(flat.end(), {d.x1, d.y1, d.x2, d.y2, d.score, float(d.label)});
    jfloatArray result = env->NewFloatArray(jsize(flat.size()));
    env->SetFloatArrayRegion(result, 0, jsize(flat.size()), flat.data());
    return result;
}

extern "C" JNIEXPORT jfloat JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_lastInferenceMs(JNIEnv*, jobject) {
    return g_last_inference_ms;
}
