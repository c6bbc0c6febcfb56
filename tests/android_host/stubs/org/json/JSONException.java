package org.json;

/** Host stand-in for Android's org.json (the subset ModelManifest.kt uses, with its error semantics). */
public class JSONException extends RuntimeException {
    public JSONException(String message) { super(message); }
}
