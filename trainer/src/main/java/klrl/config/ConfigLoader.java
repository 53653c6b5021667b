package klrl.config;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * YAML → {@link TrainConfig}: the user's file is laid over the defaults, key by key; a key the
 * defaults do not have is an error naming it and listing its section's keys; then CLI overrides
 * (dotted paths) are applied and the records validate.
 */
public final class ConfigLoader {
    public static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory())
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT);

    /** Presets shipped inside the jar, by name (also accepted as --config NAME). */
    public static final List<String> PRESETS = List.of("tiny-cpu", "qwen2.5-7b-math", "llama3.1-8b-math",
            "grid-k1-reward", "grid-k1-loss", "grid-k3-reward", "grid-k3-loss", "grid-k1-loss-unbiased", "grid-k3-loss-unbiased");

    private ConfigLoader() {}

    /** Loads a config file path or preset name (null = tiny-cpu), then applies overrides {"kl.coef": 0.1, …}. */
    public static TrainConfig load(String config, Map<String, Object> overrides) {
        return load(config, overrides, List.of());
    }

    /**
     * As above, then applies {@code --set key=value} assignments: dotted keys of the YAML, values read as
     * YAML (so {@code 0.1}, {@code true}, {@code [q_proj, v_proj]} and {@code null} have their types).
     */
    public static TrainConfig load(String config, Map<String, Object> overrides, List<String> assignments) {
        ObjectNode tree = YAML.valueToTree(TrainConfig.defaults());
        String where = config == null ? "tiny-cpu" : config;
        layer(tree, where, new ArrayList<>());
        for (var e : overrides.entrySet()) {
            if (e.getValue() != null) {
                set(tree, e.getKey(), e.getValue());
            }
        }
        for (String a : assignments) {
            int eq = a.indexOf('=');
            if (eq <= 0) {
                throw new UserError("--set " + a + ": expected key=value, e.g. --set rollout.max_new_tokens=1024");
            }
            String key = a.substring(0, eq).strip();
            JsonNode value;
            try {
                value = YAML.readTree(a.substring(eq + 1).isBlank() ? "null" : a.substring(eq + 1));
            } catch (IOException e) {
                throw new UserError("--set " + a + ": the value is not valid YAML (" + Json.firstLine(e.getMessage()) + ")");
            }
            ObjectNode user = YAML.createObjectNode();
            ObjectNode cur = user;
            String[] parts = key.split("\\.");
            for (int i = 0; i < parts.length - 1; i++) {
                cur = cur.putObject(parts[i]);
            }
            cur.set(parts[parts.length - 1], value == null || value.isMissingNode() ? YAML.nullNode() : value);
            merge(tree, user, "", "--set " + a);
        }
        where = assignments.isEmpty() ? where : where + " with --set";
        try {
            return YAML.treeToValue(tree, TrainConfig.class);
        } catch (MismatchedInputException e) {
            String path = e.getPath().stream().map(r -> r.getFieldName() != null ? r.getFieldName() : "[" + r.getIndex() + "]")
                    .reduce((a, b) -> a + "." + b).orElse("?");
            throw new UserError(where + ": field '" + path + "' has the wrong type (" + Json.firstLine(e.getOriginalMessage()) + ")");
        } catch (IOException e) {
            Throwable c = e.getCause();
            if (c instanceof UserError u) {
                throw new UserError(where + ": " + u.getMessage().replaceFirst("^config: ", ""));
            }
            throw new UserError(where + ": " + Json.firstLine(e.getMessage()));
        }
    }

    /**
     * Lays the file or preset {@code where} over {@code tree}; a top-level {@code base: PRESET_OR_FILE}
     * is laid down first, so a user YAML can start from a preset and change a few keys.
     */
    private static void layer(ObjectNode tree, String where, List<String> chain) {
        if (chain.contains(where)) {
            throw new UserError(where + ": 'base' chain loops: " + String.join(" → ", chain) + " → " + where);
        }
        chain.add(where);
        JsonNode user = read(where);
        if (user == null || user.isNull()) {
            return;
        }
        if (!user.isObject()) {
            throw new UserError(where + ": expected a YAML mapping at the top level");
        }
        ObjectNode own = ((ObjectNode) user).deepCopy();
        JsonNode base = own.remove("base");
        if (base != null && !base.isNull()) {
            if (!base.isTextual()) {
                throw new UserError(where + ": 'base' must name a preset or a YAML file, e.g. base: qwen2.5-7b-math");
            }
            Path file = Path.of(where).getParent();
            String b = base.asText();
            layer(tree, file != null && Files.isRegularFile(file.resolve(b)) ? file.resolve(b).toString() : b, chain);
        }
        merge(tree, own, "", where);
    }

    private static JsonNode read(String where) {
        Path p = Path.of(where);
        try {
            if (Files.isRegularFile(p)) {
                return YAML.readTree(p.toFile());
            }
            String name = where.endsWith(".yaml") ? where.substring(0, where.length() - 5) : where;
            name = name.startsWith("configs/") ? name.substring(8) : name;
            try (InputStream in = ConfigLoader.class.getResourceAsStream("/configs/" + name + ".yaml")) {
                if (in != null) {
                    return YAML.readTree(in);
                }
            }
        } catch (IOException e) {
            throw new UserError(where + ": not valid YAML (" + Json.firstLine(e.getMessage()) + ")");
        }
        throw new UserError("--config " + where + ": no such file and not a preset; presets: " + PRESETS);
    }

    private static void merge(ObjectNode base, ObjectNode user, String prefix, String where) {
        var it = user.fields();
        while (it.hasNext()) {
            var e = it.next();
            String key = prefix + e.getKey();
            if (!base.has(e.getKey())) {
                List<String> valid = new ArrayList<>();
                base.fieldNames().forEachRemaining(valid::add);
                String near = closest(e.getKey(), valid);
                throw new UserError(where + ": unknown key '" + key + "'" + (prefix.isEmpty() ? "" : " in '"
                        + prefix.substring(0, prefix.length() - 1) + "'") + (near == null ? "" : "; did you mean '"
                        + prefix + near + "'?") + " Valid keys there: " + valid);
            }
            JsonNode b = base.get(e.getKey());
            if (b != null && b.isObject() && e.getValue().isObject()) {
                merge((ObjectNode) b, (ObjectNode) e.getValue(), key + ".", where);
            } else if (b != null && b.isObject() && !e.getValue().isNull()) {
                throw new UserError(where + ": '" + key + "' is a section; expected a mapping");
            } else {
                base.set(e.getKey(), e.getValue());
            }
        }
    }

    /** The valid key nearest to {@code key} by edit distance, if it is near enough to be a typo. */
    static String closest(String key, List<String> valid) {
        String best = null;
        int bestD = Integer.MAX_VALUE;
        for (String v : valid) {
            int d = editDistance(key, v);
            if (d < bestD) {
                best = v;
                bestD = d;
            }
        }
        return bestD <= Math.max(2, key.length() / 3) ? best : null;
    }

    private static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                cur[j] = Math.min(Math.min(cur[j - 1], prev[j]) + 1, prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }

    private static void set(ObjectNode tree, String dotted, Object value) {
        String[] parts = dotted.split("\\.");
        ObjectNode cur = tree;
        for (int i = 0; i < parts.length - 1; i++) {
            cur = (ObjectNode) cur.get(parts[i]);
        }
        cur.set(parts[parts.length - 1], YAML.valueToTree(value));
    }

    /** The config keys that hold file or folder paths (data sets comma-separated). */
    private static final List<String> PATHS = List.of("output_dir", "model.path", "train.reward_jar", "rollout.weights_dir",
            "data.train", "data.eval");

    /**
     * The config with every path absolute, so that the config.yaml a run saves reads the same from any
     * working folder ({@code --resume RUN} from elsewhere). Bundled sets and presets stay as named.
     */
    public static TrainConfig absolutePaths(TrainConfig c) {
        ObjectNode tree = YAML.valueToTree(c);
        for (String key : PATHS) {
            String[] parts = key.split("\\.");
            ObjectNode parent = tree;
            for (int i = 0; i < parts.length - 1; i++) {
                parent = (ObjectNode) parent.get(parts[i]);
            }
            JsonNode v = parent.get(parts[parts.length - 1]);
            if (v != null && v.isTextual() && !v.asText().isBlank()) {
                List<String> out = new ArrayList<>();
                // only data.eval is a list; a glob's {a,b} keeps its commas
                for (String one : key.equals("data.eval") ? klrl.data.Dataset.specs(v.asText()) : List.of(v.asText())) {
                    String s = one.strip();
                    out.add(s.isEmpty() || s.startsWith("bundled:") ? s : Path.of(s).toAbsolutePath().normalize().toString());
                }
                parent.put(parts[parts.length - 1], String.join(",", out));
            }
        }
        try {
            return YAML.treeToValue(tree, TrainConfig.class);
        } catch (IOException e) {
            throw new IllegalStateException(e); // the tree came from a valid config
        }
    }

    /** The effective config as YAML (written next to every run). */
    public static String toYaml(TrainConfig c) {
        try {
            return YAML.writeValueAsString(c);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
