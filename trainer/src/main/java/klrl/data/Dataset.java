package klrl.data;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * Problem sets: a JSONL or parquet file, a folder of them (a dataset's shards), a glob, or a bundled
 * set. Every row of either format becomes one JSON row; {@link Fields} then maps every row the same
 * way (dotted field paths, message-list prompts, the known layouts detected).
 */
public final class Dataset {
    private Dataset() {}

    /** The bundled synthetic arithmetic sets, inside the jar. */
    public static final String BUNDLED_TRAIN = "bundled:arith-train", BUNDLED_TEST = "bundled:arith-test",
            BUNDLED_WARMUP_FAMILIES = "bundled:warmup-families";

    /** What a data set read: its examples and how its fields were mapped ("verl layout: prompt ← …"). */
    public record Loaded(String spec, List<Example> examples, int files, String mapping) {
        /** One line: rows, files, the mapping. */
        public String describe() {
            return examples.size() + " rows" + (files > 1 ? " from " + files + " files" : "") + ", " + mapping;
        }
    }

    /** The examples of {@code spec}; a null field means "detect it" (always so for a bundled set). */
    public static List<Example> load(String spec, String promptField, String answerField) {
        return read(spec, promptField, answerField).examples();
    }

    /** As {@link #load}, with how the fields were mapped. */
    public static Loaded read(String spec, String promptField, String answerField) {
        return read(spec, promptField, answerField, "data.prompt_field", "data.answer_field");
    }

    /** As {@link #load}; {@code promptKey} / {@code answerKey} name the settings the fields came from, for messages. */
    public static Loaded read(String spec, String promptField, String answerField, String promptKey, String answerKey) {
        List<Row> rows = new ArrayList<>();
        List<Path> files = spec.startsWith("bundled:") ? List.of() : files(spec);
        if (spec.startsWith("bundled:")) {
            promptField = null; // a bundled set has its own fields, whatever data.*_field says
            answerField = null;
            try (InputStream in = Dataset.class.getResourceAsStream("/data/" + spec.substring(8) + ".jsonl")) {
                if (in == null) {
                    throw new UserError(spec + ": no such bundled data set");
                }
                jsonl(in, spec, rows);
            } catch (IOException e) {
                throw new UserError(spec + ": cannot read (" + e.getMessage() + ")");
            }
        }
        for (Path f : files) {
            int before = rows.size();
            if (f.getFileName().toString().endsWith(".parquet")) {
                List<JsonNode> pq = Parquet.rows(f);
                for (int i = 0; i < pq.size(); i++) {
                    rows.add(new Row(pq.get(i), f + ":" + (i + 1)));
                }
            } else {
                try (InputStream in = Files.newInputStream(f)) {
                    jsonl(in, f.toString(), rows);
                } catch (IOException e) {
                    throw new UserError(f + ": cannot read (" + e.getMessage() + ")");
                }
            }
            if (rows.size() == before) {
                throw new UserError(f + ": no rows");
            }
        }
        if (rows.isEmpty()) {
            throw new UserError(spec + ": no rows");
        }
        Fields.Mapping m = Fields.detect(rows.get(0).value(), promptField, answerField, promptKey, answerKey, rows.get(0).where());
        List<Example> out = new ArrayList<>(rows.size());
        for (Row r : rows) {
            out.add(m.example(r.value(), r.where()));
        }
        return new Loaded(spec, out, Math.max(1, files.size()), m.describe());
    }

    /** A comma-separated list of data paths, split at the commas outside a glob's {a,b}; blank entries dropped. */
    public static List<String> specs(String list) {
        List<String> out = new ArrayList<>();
        int depth = 0, from = 0;
        for (int i = 0; i <= list.length(); i++) {
            char c = i < list.length() ? list.charAt(i) : ',';
            depth += c == '{' ? 1 : c == '}' ? -1 : 0;
            if (c == ',' && depth <= 0) {
                String one = list.substring(from, i).strip();
                if (!one.isEmpty()) {
                    out.add(one);
                }
                from = i + 1;
            }
        }
        return out;
    }

    /** One row and where it is ("file:N", N counted from 1: a JSONL line, or a parquet row). */
    record Row(JsonNode value, String where) {}

    private static void jsonl(InputStream in, String where, List<Row> rows) throws IOException {
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        String line;
        int n = 0;
        while ((line = r.readLine()) != null) {
            n++;
            if (line.isBlank()) {
                continue;
            }
            JsonNode row;
            if (n == 1 && line.startsWith("\uFEFF")) {
                line = line.substring(1); // a byte-order mark some editors write
            }
            try {
                row = Json.MAPPER.readTree(line);
            } catch (IOException e) {
                throw new UserError(where + ":" + n + ": not valid JSON" + (n == 1 && line.strip().startsWith("[")
                        ? " lines (a JSONL file holds one JSON object per line, not one array)" : ""));
            }
            if (row == null || !row.isObject()) {
                throw new UserError(where + ":" + n + ": expected a JSON object per line" + (row != null && row.isArray()
                        ? ", found an array (a JSONL file holds one JSON object per line, not one array)" : ""));
            }
            rows.add(new Row(row, where + ":" + n));
        }
    }

    /**
     * The files a data path names: the file itself (parquet when it ends in .parquet, else JSONL), every
     * {@code *.parquet} / {@code *.jsonl} directly in a folder (sorted by name, as a dataset's shards
     * {@code train-00000-of-00002.parquet} are), or the files a glob matches (sorted).
     */
    static List<Path> files(String spec) {
        if (spec.isBlank()) {
            throw new UserError("a data path is empty; give a file, a folder or a glob");
        }
        Path p;
        try {
            p = Path.of(spec);
        } catch (java.nio.file.InvalidPathException e) {
            p = null;
        }
        if (p != null && Files.isRegularFile(p)) { // a file whose name has [ or { is a file, not a pattern
            return List.of(p);
        }
        if (spec.chars().anyMatch(c -> c == '*' || c == '?' || c == '[' || c == '{')) {
            return glob(spec);
        }
        if (p == null) {
            throw new UserError(spec + ": not a valid path");
        }
        if (!Files.isDirectory(p)) {
            throw new UserError(spec + ": data file not found");
        }
        List<Path> in = dataFiles(p);
        if (in.isEmpty()) {
            List<String> sub = new ArrayList<>();
            try (Stream<Path> s = Files.list(p)) {
                s.filter(Files::isDirectory).sorted().filter(d -> !dataFiles(d).isEmpty())
                        .forEach(d -> sub.add(d.getFileName() + "/"));
            } catch (IOException e) {
                throw new UserError(spec + ": cannot list the folder (" + e.getMessage() + ")");
            }
            throw new UserError(spec + ": no *.parquet or *.jsonl files in this folder"
                    + (sub.isEmpty() ? "" : "; its subfolders " + sub + " have some: name one of them"));
        }
        // a dataset's folder often holds every split (train-…, test-…): one set must not mix them
        java.util.Set<String> splits = new java.util.TreeSet<>();
        for (Path f : in) {
            String prefix = f.getFileName().toString().split("[-_.]", 2)[0].toLowerCase(java.util.Locale.ROOT);
            if (SPLITS.contains(prefix)) {
                splits.add(prefix);
            }
        }
        if (splits.size() > 1) {
            throw new UserError(spec + ": holds the splits " + splits + "; name one with a glob, e.g. '"
                    + p.resolve(splits.contains("train") ? "train" : splits.iterator().next()) + "-*' (quoted)");
        }
        return in;
    }

    private static final java.util.Set<String> SPLITS = java.util.Set.of("train", "test", "validation", "valid", "val", "dev", "eval");

    private static List<Path> dataFiles(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(Files::isRegularFile).filter(f -> dataName(f.getFileName().toString())).sorted().toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    private static boolean dataName(String name) {
        return name.endsWith(".parquet") || name.endsWith(".jsonl");
    }

    private static List<Path> glob(String spec) {
        // the folder before the first wildcard is walked, no deeper than the pattern reaches (any depth with **)
        int wild = spec.length();
        for (char c : new char[] {'*', '?', '[', '{'}) {
            if (spec.indexOf(c) >= 0) {
                wild = Math.min(wild, spec.indexOf(c));
            }
        }
        String fixed = spec.substring(0, wild);
        int slash = Math.max(fixed.lastIndexOf('/'), fixed.lastIndexOf(java.io.File.separatorChar));
        Path base = Path.of(slash < 0 ? "." : slash == 0 ? "/" : fixed.substring(0, slash));
        boolean relativeToDot = slash < 0;
        PathMatcher m;
        try {
            m = FileSystems.getDefault().getPathMatcher("glob:" + spec);
        } catch (IllegalArgumentException e) { // PatternSyntaxException among them
            throw new UserError(spec + ": not a valid glob (" + Json.firstLine(e.getMessage()) + ")");
        }
        if (!Files.isDirectory(base)) {
            throw new UserError(spec + ": folder " + base + " not found");
        }
        String rest = spec.substring(slash + 1);
        int depth = rest.contains("**") ? Integer.MAX_VALUE : (int) rest.chars().filter(c -> c == '/').count() + 1;
        List<Path> out = new ArrayList<>();
        try {
            Files.walkFileTree(base, java.util.EnumSet.noneOf(java.nio.file.FileVisitOption.class), depth,
                    new java.nio.file.SimpleFileVisitor<>() {
                        @Override
                        public java.nio.file.FileVisitResult visitFile(Path f, java.nio.file.attribute.BasicFileAttributes a) {
                            if (a.isRegularFile() && m.matches(relativeToDot ? base.relativize(f) : f) && dataName(f.getFileName().toString())) {
                                out.add(f);
                            }
                            return java.nio.file.FileVisitResult.CONTINUE;
                        }

                        @Override
                        public java.nio.file.FileVisitResult visitFileFailed(Path f, IOException e) {
                            return java.nio.file.FileVisitResult.CONTINUE; // an unreadable folder holds none of the data
                        }
                    });
        } catch (IOException e) {
            throw new UserError(spec + ": cannot list " + base + " (" + e.getMessage() + ")");
        }
        if (out.isEmpty()) {
            throw new UserError(spec + ": no *.parquet or *.jsonl file matches");
        }
        out.sort(null);
        return out;
    }
}
