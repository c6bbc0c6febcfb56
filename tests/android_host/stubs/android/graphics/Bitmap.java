package android.graphics;

/** Host stand-in for an ARGB_8888 Bitmap: its pixel memory as Android lays it out (R, G, B, A bytes, rows of
 * width * 4 bytes), which the JNI shim hands to AndroidBitmap_lockPixels. */
public final class Bitmap {
    public enum Config { ARGB_8888 }

    public final int width;
    public final int height;
    public final byte[] pixels;

    public Bitmap(int width, int height, byte[] pixels) {
        if (pixels.length != width * height * 4) throw new IllegalArgumentException("pixels must be width*height*4 bytes");
        this.width = width;
        this.height = height;
        this.pixels = pixels;
    }

    public int getWidth() { return width; }
    public int getHeight() { return height; }
    public Config getConfig() { return Config.ARGB_8888; }
}
