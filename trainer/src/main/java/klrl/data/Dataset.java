package klrl.data;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
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
import klrl.util.Progress;
import klrl.util.UserError;

/**
 * Problem sets: a JSONL, JSON or parquet file, a folder of them (a dataset's shards), a glob, or a
 * bundled set. Every row of any format becomes one JSON row; {@link Fields} then maps every row the same
 * way (dotted field paths, message-list prompts, the known layouts detected).
 */
public final class Dataset {
    private Dataset() {}

    /** The bundled synthetic arithmetic sets, inside the jar. */
    public static final String BUNDLED_TRAIN = "bundled:arith-train", BUNDLED_TEST = "bundled:arith-test",
            BUNDLED_WARMUP_FAMILIES = "bundled:warmup-families";

    /** What a data set read: its rows and how its fields were mapped ("verl layout: prompt ← …"). */
    public record Loaded(String spec, Rows examples, int files, String mapping) {
        /** One line: rows, files, the mapping. */
        public String describe() {
            return examples.size() + (examples.size() == 1 ? " row" : " rows") + (files > 1 ? " from " + files + " files" : "") + ", " + mapping;
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

    /**
     * As {@link #load}; {@code promptKey} / {@code answerKey} name the settings the fields came from, for messages.
     * The files are read once, row by row: the first rows ({@link Fields#DETECT_ROWS}) decide the layout, and
     * every row is then mapped and checked and kept compactly ({@link Rows}); no file is ever whole in memory (of a
     * parquet file, a row group of the columns read at a time).
     */
    public static Loaded read(String spec, String promptField, String answerField, String promptKey, String answerKey) {
        boolean bundled = spec.startsWith("bundled:");
        if (bundled) {
            promptField = null; // a bundled set has its own fields, whatever data.*_field says
            answerField = null;
        }
        List<Path> files = bundled ? List.of() : files(spec);
        Mapper m = new Mapper(promptField, answerField, promptKey, answerKey);
        if (bundled) {
            try (InputStream in = Dataset.class.getResourceAsStream("/data/" + spec.substring(8) + ".jsonl")) {
                if (in == null) {
                    throw new UserError(spec + ": no such bundled data set");
                }
                jsonl(in, spec, (row, n) -> m.row(row, spec, n));
            } catch (IOException e) {
                throw new UserError(spec + ": cannot read (" + e.getMessage() + ")");
            }
        }
        // only the columns a mapping can use are read from parquet, the set field's column among them (a file holding none
        // of these columns is read whole, so its refusal can list what it has)
        java.util.Set<String> columns = new java.util.HashSet<>(Fields.LABELS);
        for (String path : promptField != null ? List.of(promptField) : Fields.PROMPTS) {
            columns.add(path);
            columns.add(path.split("\\.")[0]);
        }
        for (String path : answerField != null ? List.of(answerField) : Fields.ANSWERS) {
            columns.add(path);
            columns.add(path.split("\\.")[0]);
        }
        try (Reading progress = Reading.of(files)) {
            for (Path f : files) {
                int before = m.builder.size() + m.head.size();
                String name = f.getFileName().toString(), where = f.toString();
                Shape shape = name.endsWith(".json") ? shape(f) : Shape.LINES;
                if (name.endsWith(".parquet")) {
                    Parquet.read(f, columns, (row, n) -> m.row(row, where, n), progress::rows);
                } else if (shape == Shape.ARRAY) {
                    array(f, progress, (row, n) -> m.row(row, where, n));
                } else if (shape != Shape.LINES && shape != Shape.EMPTY) {
                    throw new UserError(f + ": holds " + shape.what + ", not rows (" + JSON_FILE + ")");
                } else {
                    try (InputStream in = progress.counting(Files.newInputStream(f))) {
                        jsonl(in, where, (row, n) -> m.row(row, where, n));
                    } catch (IOException e) {
                        throw new UserError(f + ": cannot read (" + e.getMessage() + ")");
                    }
                }
                if (m.builder.size() + m.head.size() == before) {
                    throw new UserError(f + ": no rows");
                }
                progress.done(f);
            }
        }
        Fields.Mapping mapping = m.finish(spec);
        return new Loaded(spec, m.builder.build(), Math.max(1, files.size()), mapping.describe());
    }

    /**
     * The progress of reading a set's files (klrl.util.Progress: shown once reading takes over two seconds): in
     * rows when every file is parquet (their footers count them), else in megabytes of the files.
     */
    private static final class Reading implements AutoCloseable {
        private static final long MB = 1 << 20;
        private final Progress bar;
        private final boolean inRows;

        private Reading(Progress bar, boolean inRows) {
            this.bar = bar;
            this.inRows = inRows;
        }

        static Reading of(List<Path> files) {
            if (files.stream().allMatch(f -> f.getFileName().toString().endsWith(".parquet"))) {
                long rows = 0;
                for (Path f : files) {
                    rows += Parquet.rowCount(f);
                }
                return new Reading(Progress.start("read", rows, "rows"), true);
            }
            long bytes = 0;
            for (Path f : files) {
                bytes += size(f);
            }
            return new Reading(Progress.start("read", (bytes + MB - 1) / MB, "MB"), false);
        }

        private static long size(Path f) {
            try {
                return Files.size(f);
            } catch (IOException e) {
                return 0; // reading it says what is wrong
            }
        }

        /** n more parquet rows read. */
        void rows(long n) {
            if (inRows) {
                bar.step(n);
            }
        }

        /** File f read to its end: a parquet file in a set measured in megabytes counts now. */
        void done(Path f) {
            if (!inRows && f.getFileName().toString().endsWith(".parquet")) {
                bar.step(size(f) / MB);
            }
        }

        /** The stream, counting its megabytes into the progress. */
        InputStream counting(InputStream in) {
            return new java.io.FilterInputStream(in) {
                long read;

                @Override
                public int read() throws IOException {
                    int b = super.read();
                    count(b < 0 ? 0 : 1);
                    return b;
                }

                @Override
                public int read(byte[] b, int off, int len) throws IOException {
                    int n = super.read(b, off, len);
                    count(Math.max(n, 0));
                    return n;
                }

                private void count(int n) {
                    long before = read / MB;
                    read += n;
                    if (read / MB > before && !inRows) {
                        bar.step(read / MB - before);
                    }
                }
            };
        }

        @Override
        public void close() {
            bar.close();
        }
    }

    /**
     * Maps rows as they are read: the first {@link Fields#DETECT_ROWS} are held until they decide the layout,
     * then each row is mapped (and so checked) and added to the rows kept.
     */
    private static final class Mapper {
        final String promptField, answerField, promptKey, answerKey;
        final Rows.Builder builder = new Rows.Builder();
        final List<Row> head = new ArrayList<>();
        Fields.Mapping mapping;

        Mapper(String promptField, String answerField, String promptKey, String answerKey) {
            this.promptField = promptField;
            this.answerField = answerField;
            this.promptKey = promptKey;
            this.answerKey = answerKey;
        }

        void row(JsonNode row, String file, int n) {
            if (mapping != null) {
                builder.add(mapping.example(row, file + ":" + n), file, n);
                return;
            }
            head.add(new Row(row, file, n));
            if (head.size() == Fields.DETECT_ROWS) {
                decide();
            }
        }

        /** The layout from the rows held, which are then mapped, each into its file. */
        private void decide() {
            mapping = Fields.detect(head.stream().map(Row::value).toList(), promptField, answerField, promptKey, answerKey,
                    head.get(0).where());
            for (Row r : head) {
                builder.add(mapping.example(r.value(), r.where()), r.file(), r.n());
            }
            head.clear();
        }

        Fields.Mapping finish(String spec) {
            if (mapping == null) {
                if (head.isEmpty()) {
                    throw new UserError(spec + ": no rows");
                }
                decide();
            }
            return mapping;
        }
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

    /** One row and where it is (N counted from 1: a JSONL line, a JSON array's element, a parquet row). */
    record Row(JsonNode value, String file, int n) {
        String where() {
            return file + ":" + n;
        }
    }

    /** Receives the rows of a file in order, each with its number N. */
    interface Sink {
        void row(JsonNode row, int n);
    }

    /**
     * A .json file holding one array of row objects ({@code datasets}' JSON layout, DeepScaleR's
     * {@code deepscaler.json}): streamed element by element, so a large file is never one tree in memory.
     * Row N is the array's N-th element.
     */
    private static void array(Path f, Reading progress, Sink rows) {
        int n = 0;
        boolean whole = true; // row n read to its end
        try (InputStream in = progress.counting(Files.newInputStream(f)); JsonParser p = Json.MAPPER.createParser(in)) {
            p.nextToken(); // the array's start, seen by shape()
            JsonToken t;
            while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
                n++;
                if (t != JsonToken.START_OBJECT) {
                    throw new UserError(f + ":" + n + ": element " + n + " of the array is " + kind(t) + ", not a JSON object ("
                            + JSON_FILE + ")");
                }
                whole = false;
                JsonNode row = Json.MAPPER.readTree(p);
                whole = true;
                rows.row(row, n);
            }
            if (p.nextToken() != null) {
                throw new UserError(f + ": more after the array ends (line " + p.currentLocation().getLineNr()
                        + "); a .json data file holds one array of row objects");
            }
        } catch (com.fasterxml.jackson.core.io.JsonEOFException e) {
            throw new UserError(f + ": the file ends " + (whole ? "after row " + n + " before the array closes" : "inside row " + n)
                    + " (a truncated file?)");
        } catch (JsonProcessingException e) {
            var at = e.getLocation();
            throw new UserError(f + ":" + Math.max(n, 1) + ": not valid JSON (" + (at == null ? "" : "line " + at.getLineNr()
                    + ", column " + at.getColumnNr() + ": ") + Json.firstLine(e.getOriginalMessage())
                    .replaceFirst(" \\(for (Object|Array) starting at \\[Source: .*", "") + ")"); // Jackson's source note says nothing to a user
        } catch (IOException e) {
            throw new UserError(f + ": cannot read (" + e.getMessage() + ")");
        }
    }

    private static String kind(JsonToken t) {
        return switch (t) {
            case START_ARRAY -> "a list";
            case VALUE_STRING -> "a string";
            case VALUE_NUMBER_INT, VALUE_NUMBER_FLOAT -> "a number";
            case VALUE_TRUE, VALUE_FALSE -> "a boolean";
            case VALUE_NULL -> "null";
            default -> t.asString() == null ? t.name() : t.asString();
        };
    }

    private static final String ONE_ARRAY = "a .jsonl file holds one JSON object per line; a file holding one array of rows"
            + " is read as such when its name ends in .json";
    static final String JSON_FILE = "a .json data file holds one array of row objects, or one JSON object per line";

    /** What a .json file holds, told from its first value. */
    enum Shape {
        ARRAY("an array"), LINES("JSON lines"), OBJECT("one JSON object"), EMPTY("nothing"), STRING("a string"),
        NUMBER("a number"), BOOLEAN("a boolean"), NULL("null");

        final String what;

        Shape(String what) {
            this.what = what;
        }
    }

    /**
     * The shape of a .json file: an array of rows, JSON lines (its first line is a whole object), one object
     * over several lines (a metadata file such as package.json or state.json), a scalar, or nothing. Only the
     * first line is read, unless it opens an object it does not close.
     */
    static Shape shape(Path f) {
        String first;
        try (BufferedReader r = Files.newBufferedReader(f, StandardCharsets.UTF_8)) {
            do {
                first = r.readLine();
            } while (first != null && first.replace("\uFEFF", "").isBlank());
        } catch (IOException e) { // not UTF-8 text, or unreadable: read as lines, which says what is wrong
            return Shape.LINES;
        }
        if (first == null) {
            return Shape.EMPTY;
        }
        first = first.replace("\uFEFF", "").strip();
        switch (first.charAt(0)) {
            case '[':
                return Shape.ARRAY;
            case '"':
                return Shape.STRING;
            case 't': case 'f':
                return Shape.BOOLEAN;
            case 'n':
                return Shape.NULL;
            case '{':
                break;
            default:
                if (first.charAt(0) == '-' || Character.isDigit(first.charAt(0))) {
                    return Shape.NUMBER;
                }
                return Shape.LINES; // not JSON: read as lines, which says where

        }
        try {
            if (Json.MAPPER.readTree(first).isObject()) {
                return Shape.LINES;
            }
        } catch (IOException e) {
            // an object continued on the next lines, or a broken line: the whole file tells
        }
        try (InputStream in = Files.newInputStream(f); JsonParser p = Json.MAPPER.createParser(in)) {
            p.nextToken();
            p.skipChildren();
            return p.nextToken() == null ? Shape.OBJECT : Shape.LINES;
        } catch (IOException e) { // not one valid object: read as lines, which says where it is not JSON
            return Shape.LINES;
        }
    }

    private static void jsonl(InputStream in, String where, Sink rows) throws IOException {
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
            boolean json = where.endsWith(".json");
            try {
                row = Json.MAPPER.readTree(line);
            } catch (IOException e) {
                throw new UserError(where + ":" + n + ": not valid JSON" + (json ? " (" + JSON_FILE + ")"
                        : n == 1 && line.strip().startsWith("[") ? " lines (" + ONE_ARRAY + ")" : ""));
            }
            if (row == null || !row.isObject()) {
                throw new UserError(where + ":" + n + ": expected a JSON object per line" + (json ? " (" + JSON_FILE + ")"
                        : row != null && row.isArray() ? ", found an array (" + ONE_ARRAY + ")" : ""));
            }
            rows.row(row, n);
        }
    }

    /**
     * The files a data path names: the file itself (parquet when it ends in .parquet; a .json file holds one
     * array of rows or JSON lines; else JSONL), every {@code *.parquet} / {@code *.jsonl} / {@code *.json}
     * data file directly in a folder (sorted by name, as a dataset's shards
     * {@code train-00000-of-00002.parquet} are), or the data files a glob matches (sorted).
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
            throw new UserError(spec + ": no *.parquet, *.jsonl or *.json data files in this folder"
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
            return s.filter(Files::isRegularFile).filter(Dataset::dataFile).sorted().toList();
        } catch (IOException e) {
            return List.of();
        }
    }

    /**
     * Whether a file in a folder or a glob's matches is data: parquet, JSONL, or a .json file of rows. The
     * metadata Hugging Face {@code datasets} writes beside its data, and any .json file holding one object
     * over several lines (package.json, state.json), are not rows.
     */
    private static boolean dataFile(Path f) {
        String name = f.getFileName().toString();
        if (name.endsWith(".parquet") || name.endsWith(".jsonl")) {
            return true;
        }
        return name.endsWith(".json") && !METADATA.contains(name) && shape(f) != Shape.OBJECT;
    }

    private static final java.util.Set<String> METADATA = java.util.Set.of("dataset_info.json", "dataset_infos.json",
            "dataset_dict.json", "state.json");

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
                            if (a.isRegularFile() && m.matches(relativeToDot ? base.relativize(f) : f) && dataFile(f)) {
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
            throw new UserError(spec + ": no *.parquet, *.jsonl or *.json data file matches");
        }
        out.sort(null);
        return out;
    }
}
