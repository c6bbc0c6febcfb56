package org.json;

import java.util.List;

public class JSONArray {
    final List<Object> values;

    JSONArray(List<Object> values) { this.values = values; }

    public int length() { return values.size(); }

    private Object get(int index) {
        if (index < 0 || index >= values.size()) throw new JSONException("Index " + index + " out of range [0.." + values.size() + ")");
        return values.get(index);
    }

    public int getInt(int index) { return (int) JSONObject.number(get(index), "[" + index + "]"); }
    public double getDouble(int index) { return JSONObject.number(get(index), "[" + index + "]"); }

    public String getString(int index) {
        Object v = get(index);
        if (!(v instanceof String)) throw new JSONException("Value at " + index + " is not a string");
        return (String) v;
    }
}
