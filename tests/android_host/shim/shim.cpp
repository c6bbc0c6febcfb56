// The NDK functions nanodet_jni.cpp calls, implemented on the host over the Java stand-ins, so the app's
// unmodified JNI file runs in a desktop JVM (tests/test_android_native.py).
#include <cstdarg>
#include <cstdio>
#include <string>

#include "android/asset_manager_jni.h"
#include "android/bitmap.h"
#include "android/log.h"

struct AAssetManager {
    std::string root;
};
struct AAsset {
    FILE* file;
    off_t length;
};

AAssetManager* AAssetManager_fromJava(JNIEnv* env, jobject manager) {
    static AAssetManager instance;  // as on Android, the native manager lives as long as the Java one
    jclass type = env->GetObjectClass(manager);
    jstring root = static_cast<jstring>(env->GetObjectField(manager, env->GetFieldID(type, "root", "Ljava/lang/String;")));
    const char* chars = env->GetStringUTFChars(root, nullptr);
    instance.root = chars;
    env->ReleaseStringUTFChars(root, chars);
    return &instance;
}

AAsset* AAssetManager_open(AAssetManager* mgr, const char* filename, int) {
    const std::string name(filename);
    if (name.empty() || name[0] == '/' || name.find("..") != std::string::npos) return nullptr;  // APK paths only
    FILE* file = std::fopen((mgr->root + "/" + name).c_str(), "rb");
    if (!file) return nullptr;
    std::fseek(file, 0, SEEK_END);
    const off_t length = std::ftell(file);
    std::fseek(file, 0, SEEK_SET);
    return new AAsset{file, length};
}

off_t AAsset_getLength(AAsset* asset) { return asset->length; }

int AAsset_read(AAsset* asset, void* buf, size_t count) { return int(std::fread(buf, 1, count, asset->file)); }

void AAsset_close(AAsset* asset) {
    std::fclose(asset->file);
    delete asset;
}

namespace {
jbyteArray pixels_of(JNIEnv* env, jobject bitmap) {
    return static_cast<jbyteArray>(env->GetObjectField(bitmap, env->GetFieldID(env->GetObjectClass(bitmap), "pixels", "[B")));
}
jbyte* g_locked = nullptr;  // the harness detects one bitmap at a time
}  // namespace

int AndroidBitmap_getInfo(JNIEnv* env, jobject bitmap, AndroidBitmapInfo* info) {
    jclass type = env->GetObjectClass(bitmap);
    info->width = uint32_t(env->GetIntField(bitmap, env->GetFieldID(type, "width", "I")));
    info->height = uint32_t(env->GetIntField(bitmap, env->GetFieldID(type, "height", "I")));
    info->stride = info->width * 4;
    info->format = ANDROID_BITMAP_FORMAT_RGBA_8888;
    info->flags = 0;
    return 0;
}

int AndroidBitmap_lockPixels(JNIEnv* env, jobject bitmap, void** address) {
    g_locked = env->GetByteArrayElements(pixels_of(env, bitmap), nullptr);
    *address = g_locked;
    return g_locked ? 0 : -1;
}

int AndroidBitmap_unlockPixels(JNIEnv* env, jobject bitmap) {
    env->ReleaseByteArrayElements(pixels_of(env, bitmap), g_locked, JNI_ABORT);
    g_locked = nullptr;
    return 0;
}

int __android_log_print(int, const char* tag, const char* fmt, ...) {
    std::fprintf(stderr, "%s: ", tag);
    va_list args;
    va_start(args, fmt);
    const int n = std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fputc('\n', stderr);
    return n;
}
