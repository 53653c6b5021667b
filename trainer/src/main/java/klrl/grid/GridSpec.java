package klrl.grid;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import klrl.config.ConfigLoader;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * A grid of training runs: cells (named config overrides, e.g. a KL estimator and placement) × β values
 * × settings (e.g. synchronous or lagged) × seeds, all on one base config. Blocks name which
 * combinations run, so a grid need not be a full product.
 *
 * @param base     the config every run starts from (a YAML file or preset name)
 * @param set      overrides every run gets (dotted keys, as --set)
 * @param inDomain the eval set that counts as in-domain; the others count as out-of-domain
 * @param seeds    train.seed values
 * @param cells    cell name → overrides
 * @param settings setting name → overrides
 * @param blocks   the combinations to run
 */
public record GridSpec(String base, Map<String, String> set, String inDomain, List<Long> seeds,
                       Map<String, Map<String, String>> cells, Map<String, Map<String, String>> settings, List<Block> blocks) {

    /** The cells of one setting, each at every β of {@code betas} (empty: the cell's own kl.coef). */
    public record Block(String setting, List<String> cells, List<Double> betas) {}

    /** One run of the grid: its folder name and its --set assignments (base overrides first). */
    public record Run(String name, String setting, String cell, Double beta, long seed, List<String> assignments) {
        /** The runs that differ only by seed share a group. */
        public String group() {
            return setting + "-" + cell + (beta == null ? "" : "-b" + beta);
        }
    }

    public GridSpec {
        require(!seeds.isEmpty(), "seeds must list at least one seed");
        require(!blocks.isEmpty(), "runs must list at least one block");
        for (Block b : blocks) {
            require(settings.containsKey(b.setting()), "runs: unknown setting '" + b.setting() + "' (settings: " + settings.keySet() + ")");
            for (String c : b.cells()) {
                require(cells.containsKey(c), "runs: unknown cell '" + c + "' (cells: " + cells.keySet() + ")");
            }
            for (Double beta : b.betas()) {
                require(beta != null && beta >= 0, "runs: betas must be ≥ 0");
            }
        }
    }

    /** Every run, in the order they execute: block by block, seed-major so early seeds of all cells come first. */
    public List<Run> runs() {
        List<Run> out = new ArrayList<>();
        for (long seed : seeds) {
            for (Block b : blocks) {
                for (String c : b.cells()) {
                    List<Double> betas = b.betas().isEmpty() ? java.util.Collections.singletonList(null) : b.betas();
                    for (Double beta : betas) {
                        List<String> a = new ArrayList<>();
                        set.forEach((k, v) -> a.add(k + "=" + v));
                        settings.get(b.setting()).forEach((k, v) -> a.add(k + "=" + v));
                        cells.get(c).forEach((k, v) -> a.add(k + "=" + v));
                        if (beta != null) {
                            a.add("kl.coef=" + beta);
                        }
                        a.add("train.seed=" + seed);
                        String name = b.setting() + "-" + c + (beta == null ? "" : "-b" + beta) + "-s" + seed;
                        out.add(new Run(name, b.setting(), c, beta, seed, a));
                    }
                }
            }
        }
        return out;
    }

    /** Grid specs shipped inside the jar, by name. */
    public static final List<String> PRESETS = List.of("paper-on-cpu", "paper-on-cpu-smoke");

    /** Reads a spec file or preset; every mistake is one line naming the file and the field. */
    public static GridSpec load(String spec) {
        return parse(source(spec), spec);
    }

    /** The text of a spec file or preset (a grid folder keeps it, to refuse another spec later). */
    public static String source(String spec) {
        try (InputStream in = open(spec)) {
            return new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UserError(spec + ": cannot read (" + Json.firstLine(String.valueOf(e.getMessage())) + ")");
        }
    }

    /** Parses a spec's text; {@code where} names it in errors. */
    public static GridSpec parse(String text, String where) {
        JsonNode root;
        try {
            root = ConfigLoader.YAML.readTree(text);
        } catch (IOException e) {
            throw new UserError(where + ": not valid YAML (" + Json.firstLine(e.getMessage()) + ")");
        }
        if (root == null || !root.isObject()) {
            throw new UserError(where + ": expected a mapping with base, seeds, cells, settings and runs");
        }
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!List.of("base", "set", "in_domain", "seeds", "cells", "settings", "runs").contains(k)) {
                throw new UserError(where + ": unknown key '" + k + "' (expected base, set, in_domain, seeds, cells, settings, runs)");
            }
        }
        try {
            String base = text(root, "base", where, "tiny-cpu");
            Map<String, String> set = assignments(root.get("set"), where + ": set");
            String inDomain = text(root, "in_domain", where, "arith-test");
            List<Long> seeds = new ArrayList<>();
            JsonNode s = root.get("seeds");
            if (s == null || !s.isArray()) {
                throw new UserError(where + ": seeds: expected a list of integers, e.g. [0, 1, 2]");
            }
            for (JsonNode n : s) {
                if (!n.canConvertToLong() || !n.isIntegralNumber()) {
                    throw new UserError(where + ": seeds: '" + n.asText() + "' is not an integer");
                }
                seeds.add(n.asLong());
            }
            Map<String, Map<String, String>> cells = named(root.get("cells"), where + ": cells");
            Map<String, Map<String, String>> settings = named(root.get("settings"), where + ": settings");
            List<Block> blocks = new ArrayList<>();
            JsonNode r = root.get("runs");
            if (r == null || !r.isArray()) {
                throw new UserError(where + ": runs: expected a list of {setting, cells, betas}");
            }
            int i = 0;
            for (JsonNode b : r) {
                String at = where + ": runs[" + i++ + "]";
                if (!b.isObject() || !b.path("setting").isTextual() || !b.path("cells").isArray()) {
                    throw new UserError(at + ": expected {setting: NAME, cells: [NAME, …], betas: [NUMBER, …]}");
                }
                List<String> cs = new ArrayList<>();
                b.get("cells").forEach(c -> cs.add(c.asText()));
                List<Double> betas = new ArrayList<>();
                for (JsonNode x : b.path("betas")) {
                    if (!x.isNumber()) {
                        throw new UserError(at + ": betas: '" + x.asText() + "' is not a number");
                    }
                    betas.add(x.asDouble());
                }
                blocks.add(new Block(b.get("setting").asText(), cs, betas));
            }
            return new GridSpec(base, set, inDomain, seeds, cells, settings, blocks);
        } catch (UserError e) {
            throw e.getMessage().startsWith(where) ? e : new UserError(where + ": " + e.getMessage());
        }
    }

    private static InputStream open(String spec) throws IOException {
        if (PRESETS.contains(spec)) {
            return GridSpec.class.getResourceAsStream("/configs/" + spec + ".yaml");
        }
        Path p = Path.of(spec);
        if (!Files.isRegularFile(p)) {
            throw new UserError(spec + ": grid spec not found (a YAML file, or one of " + String.join(", ", PRESETS) + ")");
        }
        return Files.newInputStream(p);
    }

    private static String text(JsonNode root, String key, String where, String dflt) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isTextual()) {
            throw new UserError(where + ": " + key + ": expected a string");
        }
        return n.asText();
    }

    /** {key: value} → "key" → "value" as YAML text, so --set reads it back with its type. */
    private static Map<String, String> assignments(JsonNode n, String where) {
        Map<String, String> out = new LinkedHashMap<>();
        if (n == null || n.isNull()) {
            return out;
        }
        if (!n.isObject()) {
            throw new UserError(where + ": expected a mapping of dotted config keys to values");
        }
        for (var it = n.fields(); it.hasNext(); ) {
            var e = it.next();
            JsonNode v = e.getValue();
            if (v.isContainerNode()) {
                throw new UserError(where + ": " + e.getKey() + ": expected a plain value (use dotted keys for nested ones)");
            }
            out.put(e.getKey(), v.isNull() ? "null" : v.asText());
        }
        return out;
    }

    private static Map<String, Map<String, String>> named(JsonNode n, String where) {
        if (n == null || !n.isObject() || n.isEmpty()) {
            throw new UserError(where + ": expected a mapping of names to overrides, e.g. k1-in-reward: {kl.estimator: k1}");
        }
        Map<String, Map<String, String>> out = new LinkedHashMap<>();
        for (var it = n.fields(); it.hasNext(); ) {
            var e = it.next();
            require(e.getKey().matches("[A-Za-z0-9._-]+"), where + ": '" + e.getKey() + "' must be letters, digits, '.', '_' or '-'");
            out.put(e.getKey(), assignments(e.getValue() instanceof ObjectNode || e.getValue().isNull() ? e.getValue() : null,
                    where + ": " + e.getKey()));
            if (!(e.getValue() instanceof ObjectNode) && !e.getValue().isNull()) {
                throw new UserError(where + ": " + e.getKey() + ": expected a mapping of overrides ({} for none)");
            }
        }
        return out;
    }

    private static void require(boolean ok, String message) {
        if (!ok) {
            throw new UserError(message);
        }
    }
}
