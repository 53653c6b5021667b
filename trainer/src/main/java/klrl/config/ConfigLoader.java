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
        ObjectNode tree = YAML.valueToTree(TrainConfig.defaults());
        String where = config == null ? "tiny-cpu" : config;
        JsonNode user = read(where);
        if (user != null && !user.isNull()) {
            if (!user.isObject()) {
                throw new UserError(where + ": expected a YAML mapping at the top level");
            }
            merge(tree, (ObjectNode) user, "", where);
        }
        for (var e : overrides.entrySet()) {
            if (e.getValue() != null) {
                set(tree, e.getKey(), e.getValue());
            }
        }
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
                throw new UserError(where + ": unknown key '" + key + "'" + (prefix.isEmpty() ? "" : " in '"
                        + prefix.substring(0, prefix.length() - 1) + "'") + "; valid keys: " + valid);
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

    private static void set(ObjectNode tree, String dotted, Object value) {
        String[] parts = dotted.split("\\.");
        ObjectNode cur = tree;
        for (int i = 0; i < parts.length - 1; i++) {
            cur = (ObjectNode) cur.get(parts[i]);
        }
        cur.set(parts[parts.length - 1], YAML.valueToTree(value));
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
