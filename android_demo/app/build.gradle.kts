import java.net.URI

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

val ncnnVersion: String = providers.gradleProperty("ncnnVersion").get()
val jniDir = layout.projectDirectory.dir("src/main/jni")

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
        ndk { abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64") }
        externalNativeBuild {
            cmake {
                arguments += listOf("-DANDROID_STL=c++_shared", "-DNCNN_VERSION=$ncnnVersion")
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

// ncnn's prebuilt Android package, fetched the way ncnn's own Android examples use it (the release zip
// unpacked into src/main/jni), by the build instead of by hand
val downloadNcnn by tasks.registering {
    val target = jniDir.dir("ncnn-$ncnnVersion-android-vulkan")
    outputs.dir(target)
    doLast {
        if (target.asFile.isDirectory) return@doLast
        val zip = jniDir.file("ncnn-$ncnnVersion-android-vulkan.zip").asFile
        val url = "https://github.com/Tencent/ncnn/releases/download/$ncnnVersion/ncnn-$ncnnVersion-android-vulkan.zip"
        logger.lifecycle("downloading $url")
        URI(url).toURL().openStream().use { input -> zip.outputStream().use { input.copyTo(it) } }
        copy {
            from(zipTree(zip))
            into(jniDir)
        }
        zip.delete()
    }
}
tasks.named("preBuild") { dependsOn(downloadNcnn) }

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
