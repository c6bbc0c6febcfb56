# ncnn for the app: the same source the exporter's ncnn wheel is built from — the ncnn sdist on PyPI (it
# carries ncnn's full C++ sources and CMake build), pinned by version and SHA-256 here (tests/native_build.py
# reads these three lines; pyproject.toml pins the wheel of the same version).
set(NANODET_NCNN_VERSION "1.0.20261020")
set(NANODET_NCNN_URL "https://files.pythonhosted.org/packages/b7/50/32b5172afe7d3e0dce410b7d8f4a5b7b84b942a0d69affbaedf669de52bc/ncnn-1.0.20261020.tar.gz")
set(NANODET_NCNN_SHA256 "ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200")
#
# With ncnn_DIR set (a prebuilt package: ncnn's Android release zip, or the host build of the tests), that is
# used. Otherwise FetchContent downloads the sdist at configure time — the first Gradle sync, so CMake finds ncnn
# before anything builds — verifies the SHA-256 (a partial or corrupt download fails the hash and is fetched
# again) and builds ncnn with the app: CPU kernels for the ABI plus Vulkan (glslang from the sdist, ncnn's
# built-in Vulkan loader), static, only the layers in ncnn_layers.txt.
if(TARGET ncnn)
    return()
endif()
if(ncnn_DIR)
    string(REPLACE "<abi>" "${ANDROID_ABI}" ncnn_DIR "${ncnn_DIR}")
    find_package(ncnn REQUIRED)
    return()
endif()

include(FetchContent)
if(NOT DEFINED NANODET_NCNN_VULKAN)  # the app's GPU switch; off on a desktop
    if(ANDROID)
        set(NANODET_NCNN_VULKAN ON)
    else()
        set(NANODET_NCNN_VULKAN OFF)
    endif()
endif()
file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/ncnn_layers.txt NANODET_NCNN_LAYERS REGEX "^[A-Za-z0-9]+$")
set(NCNN_BUILD_TOOLS OFF CACHE BOOL "" FORCE)
set(NCNN_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
set(NCNN_BUILD_BENCHMARK OFF CACHE BOOL "" FORCE)
set(NCNN_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(NCNN_PYTHON OFF CACHE BOOL "" FORCE)
set(NCNN_SHARED_LIB OFF CACHE BOOL "" FORCE)
set(NCNN_INSTALL_SDK OFF CACHE BOOL "" FORCE)
set(NCNN_PIXEL_DRAWING OFF CACHE BOOL "" FORCE)
set(NCNN_VULKAN ${NANODET_NCNN_VULKAN} CACHE BOOL "" FORCE)
# every layer off but ours: ncnn_add_layer(Name) declares WITH_LAYER_<name> (lower case), default ON
FetchContent_Declare(ncnn URL ${NANODET_NCNN_URL} URL_HASH SHA256=${NANODET_NCNN_SHA256}
                     DOWNLOAD_EXTRACT_TIMESTAMP TRUE)
FetchContent_GetProperties(ncnn)
if(NOT ncnn_POPULATED)
    FetchContent_Populate(ncnn)
    file(STRINGS ${ncnn_SOURCE_DIR}/src/CMakeLists.txt NANODET_NCNN_ALL REGEX "ncnn_add_layer\\(")
    foreach(line ${NANODET_NCNN_ALL})
        string(REGEX REPLACE ".*ncnn_add_layer\\(([A-Za-z0-9]+).*" "\\1" layer "${line}")
        string(TOLOWER ${layer} lower)
        if(layer IN_LIST NANODET_NCNN_LAYERS)
            set(WITH_LAYER_${lower} ON CACHE BOOL "" FORCE)
        else()
            set(WITH_LAYER_${lower} OFF CACHE BOOL "" FORCE)
        endif()
    endforeach()
    add_subdirectory(${ncnn_SOURCE_DIR} ${ncnn_BINARY_DIR} EXCLUDE_FROM_ALL)
endif()
