package org.json;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A small strict JSON parser behind Android's org.json API: what ModelManifest.kt calls. */
public class JSONObject {
    private final Map<String, Object> values;

    JSONObject(Map<String, Object> values) { this.values = values; }

    public JSONObject(String text) {
        Parser parser = new Parser(text);
        Object value = parser.value();
        parser.skipSpace();
        if (parser.pos != text.length()) throw new JSONException("trailing characters at " + parser.pos);
        if (!(value instanceof JSONObject)) throw new JSONException("Value is not a JSONObject");
        this.values = ((JSONObject) value).values;
    }

    private Object get(String key) {
        if (!values.containsKey(key) || values.get(key) == null) throw new JSONException("No value for " + key);
        return values.get(key);
    }

    static double number(Object v, String key) {
        if (v instanceof Double) return (Double) v;
        throw new JSONException("Value at " + key + " is not a number");
    }

    public String getString(String key) {
        Object v = get(key);
        if (!(v instanceof String)) throw new JSONException("Value at " + key + " is not a string");
        return (String) v;
    }
    public int getInt(String key) { return (int) number(get(key), key); }
    public double getDouble(String key) { return number(get(key), key); }
    public boolean getBoolean(String key) {
        Object v = get(key);
        if (!(v instanceof Boolean)) throw new JSONException("Value at " + key + " is not a boolean");
        return (Boolean) v;
    }
    public JSONObject getJSONObject(String key) {
        Object v = get(key);
        if (!(v instanceof JSONObject)) throw new JSONException("Value at " + key + " is not a JSONObject");
        return (JSONObject) v;
    }
    public JSONArray getJSONArray(String key) {
        Object v = get(key);
        if (!(v instanceof JSONArray)) throw new JSONException("Value at " + key + " is not a JSONArray");
        return (JSONArray) v;
    }
    public String optString(String key, String fallback) {
        Object v = values.get(key);
        return v instanceof String ? (String) v : fallback;
    }
    public double optDouble(String key, double fallback) {
        Object v = values.get(key);
        return v instanceof Double ? (Double) v : fallback;
    }
    public int optInt(String key, int fallback) {
        Object v = values.get(key);
        return v instanceof Double ? (int) (double) (Double) v : fallback;
    }

    private static final class Parser {
        final String text;
        int pos;

        Parser(String text) { this.text = text; }

        void skipSpace() {
            while (pos < text.length() && Character.isWhitespace(text.charAt(pos))) pos++;
        }

        JSONException error(String what) { return new JSONException(what + " at character " + pos); }

        Object value() {
            skipSpace();
            if (pos >= text.length()) throw error("End of input");
            char c = text.charAt(pos);
            if (c == '{') return object();
            if (c == '[') return array();
            if (c == '"') return string();
            if (text.startsWith("true", pos)) { pos += 4; return Boolean.TRUE; }
            if (text.startsWith("false", pos)) { pos += 5; return Boolean.FALSE; }
            if (text.startsWith("null", pos)) { pos += 4; return null; }
            int start = pos;
            while (pos < text.length() && "+-0123456789.eE".indexOf(text.charAt(pos)) >= 0) pos++;
            try {
                return Double.parseDouble(text.substring(start, pos));
            } catch (NumberFormatException e) {
                throw error("Unexpected character");
            }
        }

        JSONObject object() {
            Map<String, Object> map = new LinkedHashMap<>();
            pos++;
            skipSpace();
            if (pos < text.length() && text.charAt(pos) == '}') { pos++; return new JSONObject(map); }
            while (true) {
                skipSpace();
                if (pos >= text.length() || text.charAt(pos) != '"') throw error("Expected a name");
                String key = string();
                skipSpace();
                if (pos >= text.length() || text.charAt(pos) != ':') throw error("Expected ':'");
                pos++;
                map.put(key, value());
                skipSpace();
                if (pos >= text.length()) throw error("Unterminated object");
                char c = text.charAt(pos++);
                if (c == '}') return new JSONObject(map);
                if (c != ',') throw error("Expected ',' or '}'");
            }
        }

        JSONArray array() {
            List<Object> list = new ArrayList<>();
            pos++;
            skipSpace();
            if (pos < text.length() && text.charAt(pos) == ']') { pos++; return new JSONArray(list); }
            while (true) {
                list.add(value());
                skipSpace();
                if (pos >= text.length()) throw error("Unterminated array");
                char c = text.charAt(pos++);
                if (c == ']') return new JSONArray(list);
                if (c != ',') throw error("Expected ',' or ']'");
            }
        }

        String string() {
            StringBuilder out = new StringBuilder();
            pos++;
            while (pos < text.length()) {
                char c = text.charAt(pos++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                if (pos >= text.length()) break;
                char e = text.charAt(pos++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u':
                        if (pos + 4 > text.length()) throw error("Bad escape");
                        out.append((char) Integer.parseInt(text.substring(pos, pos + 4), 16));
                        pos += 4;
                        break;
                    default: out.append(e);
                }
            }
            throw error("Unterminated string");
        }
    }
}
