plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// optional (gradle.properties or -PncnnDir=...): a prebuilt ncnn CMake package, "<abi>" standing for the ABI
// folder, e.g. /opt/ncnn-20261020-android-vulkan/<abi>/lib/cmake/ncnn; without it CMake builds ncnn from the
// pinned PyPI sdist (core/ncnn.cmake), the version the exporter uses
val ncnnDir: String? = providers.gradleProperty("ncnnDir").orNull

android {
    namespace = "io.nanodet.deploy.demo"
    compileSdk = 34
    ndkVersion = "26.3.11579264"

    defaultConfig {
        applicationId = "io.nanodet.deploy.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "1.0"
        // phones (arm64) and the emulator (x86_64); add "armeabi-v7a" for 32-bit phones
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
        externalNativeBuild {
            cmake {
                // static C++ runtime: one .so, linked for 16 KB pages (NDK r26's libc++_shared.so is not)
                arguments += listOf("-DANDROID_STL=c++_static")
                ncnnDir?.let { arguments += "-Dncnn_DIR=$it" }
                cppFlags += "-std=c++17"
            }
        }
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    buildFeatures { viewBinding = true }
    externalNativeBuild {
        cmake {
            path = file("src/main/jni/CMakeLists.txt")
            version = "3.22.1"
        }
    }
    // the model files are loaded straight from the APK: keep them uncompressed
    androidResources { noCompress += listOf("bin", "param") }
}

dependencies {
    val camerax = "1.3.4"
    implementation("androidx.core:core-ktx:1.13.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("com.google.android.material:material:1.12.0")
    implementation("androidx.constraintlayout:constraintlayout:2.1.4")
    implementation("androidx.activity:activity-ktx:1.9.1")
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
}
