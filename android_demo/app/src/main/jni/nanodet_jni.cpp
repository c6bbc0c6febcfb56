// JNI layer: marshalling only. Java arrays and strings -> the model configuration, assets -> bytes, an
// ARGB_8888 bitmap -> BGR pixels; everything else is the app's detector (android_demo/core/nanodet_ncnn.h),
// which the host test suite builds and runs against ncnn from source on real images.
#include <android/asset_manager_jni.h>
#include <android/bitmap.h>
#include <android/log.h>
#include <jni.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nanodet_ncnn.h"

#define LOGE(...) __android_log_print(ANDROID_LOG_ERROR, "nanodet", __VA_ARGS__)

namespace {

std::mutex g_mutex;
std::unique_ptr<nanodet::NcnnDetector> g_detector;
std::string g_last_error;

std::string to_string(JNIEnv* env, jstring value) {
    const char* chars = env->GetStringUTFChars(value, nullptr);
    std::string out(chars);
    env->ReleaseStringUTFChars(value, chars);
    return out;
}

bool read_asset(AAssetManager* assets, const std::string& name, std::vector<unsigned char>* out) {
    AAsset* asset = AAssetManager_open(assets, name.c_str(), AASSET_MODE_BUFFER);
    if (!asset) return false;
    out->resize(size_t(AAsset_getLength(asset)));
    const bool complete = AAsset_read(asset, out->data(), out->size()) == int(out->size());
    AAsset_close(asset);
    return complete;
}

}  // namespace

extern "C" JNIEXPORT jboolean JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_load(
    JNIEnv* env, jobject, jobject asset_manager, jstring param_file, jstring bin_file, jstring input_name,
    jstring output_name, jint input_width, jint input_height, jint num_classes, jint reg_max, jintArray strides,
    jdoubleArray mean, jdoubleArray std, jboolean keep_ratio, jfloat iou_threshold, jint max_detections,
    jstring precision, jboolean fast_fp16, jboolean use_gpu, jint threads) {
    nanodet::ModelConfig config;
    config.input_width = input_width;
    config.input_height = input_height;
    config.num_classes = num_classes;
    config.reg_max = reg_max;
    config.keep_ratio = keep_ratio;
    config.iou_threshold = iou_threshold;
    config.max_detections = max_detections;
    const jsize n = env->GetArrayLength(strides);
    config.strides.assign(n, 0);
    env->GetIntArrayRegion(strides, 0, n, config.strides.data());
    env->GetDoubleArrayRegion(mean, 0, 3, config.mean.data());
    env->GetDoubleArrayRegion(std, 0, 3, config.std.data());

    nanodet::DetectorOptions options;
    options.input_name = to_string(env, input_name);
    options.output_name = to_string(env, output_name);
    options.precision = to_string(env, precision);
    options.fast_fp16 = fast_fp16;
    options.use_gpu = use_gpu;
    options.threads = threads;

    AAssetManager* assets = AAssetManager_fromJava(env, asset_manager);
    const std::string param_name = to_string(env, param_file), bin_name = to_string(env, bin_file);
    std::vector<unsigned char> param, weights;
    std::string error;
    auto detector = std::make_unique<nanodet::NcnnDetector>();
    if (!read_asset(assets, param_name, &param) || !read_asset(assets, bin_name, &weights)) {
        error = "missing model files in assets: " + param_name + ", " + bin_name;
    } else if (!detector->load(config, options, std::string(param.begin(), param.end()), std::move(weights),
                               &error)) {
        error = param_name + ": " + error;
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    g_last_error = error;
    if (!error.empty()) {
        LOGE("%s", error.c_str());
        return JNI_FALSE;
    }
    g_detector = std::move(detector);
    return JNI_TRUE;
}

extern "C" JNIEXPORT jfloatArray JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_detect(
    JNIEnv* env, jobject, jobject bitmap, jfloat score_threshold) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_detector) return env->NewFloatArray(0);
    AndroidBitmapInfo info;
    void* pixels = nullptr;
    if (AndroidBitmap_getInfo(env, bitmap, &info) != 0 || info.format != ANDROID_BITMAP_FORMAT_RGBA_8888 ||
        AndroidBitmap_lockPixels(env, bitmap, &pixels) != 0) {
        g_last_error = "detect needs an ARGB_8888 bitmap";
        return env->NewFloatArray(0);
    }
    const std::vector<uint8_t> bgr = nanodet::bgr_from_rgba(static_cast<const uint8_t*>(pixels), int(info.width),
                                                            int(info.height), int(info.stride));
    AndroidBitmap_unlockPixels(env, bitmap);

    g_last_error.clear();
    const auto detections = g_detector->detect(bgr.data(), int(info.width), int(info.height),
                                               int(info.width) * 3, score_threshold, &g_last_error);
    if (!g_last_error.empty()) LOGE("%s", g_last_error.c_str());
    std::vector<float> flat;
    flat.reserve(detections.size() * 6);
    for (const auto& d : detections) flat.insert(flat.end(), {d.x1, d.y1, d.x2, d.y2, d.score, float(d.label)});
    jfloatArray result = env->NewFloatArray(jsize(flat.size()));
    env->SetFloatArrayRegion(result, 0, jsize(flat.size()), flat.data());
    return result;
}

extern "C" JNIEXPORT jfloat JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_lastInferenceMs(JNIEnv*, jobject) {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_detector ? g_detector->last_inference_ms() : 0.f;
}

extern "C" JNIEXPORT jstring JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_runningPrecision(JNIEnv* env,
                                                                                              jobject) {
    std::lock_guard<std::mutex> lock(g_mutex);
    return env->NewStringUTF(g_detector ? g_detector->running_precision().c_str() : "no model");
}

extern "C" JNIEXPORT jstring JNICALL Java_io_nanodet_deploy_demo_NanoDetNative_lastError(JNIEnv* env, jobject) {
    std::lock_guard<std::mutex> lock(g_mutex);
    return env->NewStringUTF(g_last_error.c_str());
}
