package android.content.res;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;

/** Host stand-in for Android's AssetManager: the app's assets/ folder on disk. The JNI shim
 * (tests/android_host/shim) reads {@link #root} where Android's AAssetManager_fromJava reads the APK. */
public final class AssetManager {
    public final String root;

    public AssetManager(String root) {
        this.root = root;
    }

    public InputStream open(String name) throws IOException {
        return new FileInputStream(new File(root, name));
    }
}
