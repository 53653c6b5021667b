package klrl.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import klrl.TestPaths;
import klrl.model.Tokenizer;
import klrl.util.Json;
import klrl.util.UserError;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.metadata.ColumnChunkMetaData;
import org.apache.parquet.io.LocalInputFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Rows kept compactly (each distinct prompt once, a few ints a row) are the rows as read one by one: the
 * same prompts, gold answers, places and order, on every fixture and on sets repeating their prompts across
 * files; the labels results are broken down by are kept; a prompt's token count measured in a batch is the
 * one its own encoding gives; parquet columns no mapping uses are never read.
 */
class CompactRowsTest {
    static final Path DIR = Path.of("src/test/resources/data").toAbsolutePath();
    @TempDir Path tmp;

    /** The reference: every row of a data path whole, then mapped one by one. */
    static List<Example> oneByOne(String spec, String promptField, String answerField) throws IOException {
        List<Dataset.Row> rows = new ArrayList<>();
        for (Path f : Dataset.files(spec)) {
            if (f.toString().endsWith(".parquet")) {
                List<JsonNode> pq = Parquet.rows(f);
                for (int i = 0; i < pq.size(); i++) {
                    rows.add(new Dataset.Row(pq.get(i), f.toString(), i + 1));
                }
            } else {
                List<String> lines = Files.readAllLines(f);
                for (int i = 0; i < lines.size(); i++) {
                    if (!lines.get(i).isBlank()) {
                        rows.add(new Dataset.Row(Json.MAPPER.readTree(lines.get(i)), f.toString(), i + 1));
                    }
                }
            }
        }
        Fields.Mapping m = Fields.detect(rows.subList(0, Math.min(rows.size(), Fields.DETECT_ROWS)).stream().map(Dataset.Row::value)
                .toList(), promptField, answerField, "data.prompt_field", "data.answer_field", rows.get(0).where());
        return rows.stream().map(r -> m.example(r.value(), r.where())).toList();
    }

    static List<String> fixtures() throws IOException {
        List<String> out = new ArrayList<>(List.of(DIR.resolve("shards").toString(), DIR.resolve("shards-jsonl").toString()));
        try (Stream<Path> s = Files.list(DIR)) {
            s.map(Path::toString).filter(n -> (n.endsWith(".jsonl") || n.endsWith(".parquet")) && !n.contains("null-answer")).sorted()
                    .forEach(out::add);
        }
        return out;
    }

    @Test
    void compactRowsAreTheRowsReadOneByOneOnEveryFixture() throws IOException {
        List<String> all = fixtures();
        assertTrue(all.size() >= 18, all.toString());
        for (String spec : all) {
            assertEquals(oneByOne(spec, null, null), new ArrayList<>(Dataset.load(spec, null, null)), spec);
        }
        // fields set, a message list's last turn as the gold answer
        String verl = DIR.resolve("verl.parquet").toString();
        assertEquals(oneByOne(verl, "extra_info.question", "extra_info.answer"),
                new ArrayList<>(Dataset.load(verl, "extra_info.question", "extra_info.answer")));
    }

    @Test
    void promptsRepeatedAcrossFilesAreKeptOnceAndEveryRowIsAsRead() throws IOException {
        // three files, blank lines between rows, prompts repeated within and across files, in both prompt kinds
        Path dir = Files.createDirectories(tmp.resolve("set"));
        List<String> a = new ArrayList<>(), b = new ArrayList<>(), c = new ArrayList<>();
        for (int i = 0; i < 1500; i++) { // more rows than the layout is decided over
            String q = "What is " + (i % 7) + " + " + (i % 5) + "?";
            (i % 3 == 0 ? a : i % 3 == 1 ? b : c).add("{\"data_source\": \"src" + (i % 2) + "\", \"prompt\": [{\"role\": \"user\", \"content\": \""
                    + q + "\"}], \"reward_model\": {\"ground_truth\": \"" + (i % 7 + i % 5) + "\"}}" + (i % 10 == 0 ? "\n" : ""));
        }
        // the same question as a plain-text prompt, a user turn (one of the sums above) and a user turn after a system turn
        for (String prompt : new String[] {"\"What is 1 + 1?\"", "[{\"role\": \"user\", \"content\": \"What is 1 + 1?\"}]",
            "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"What is 1 + 1?\"}]"}) {
            c.add("{\"prompt\": " + prompt + ", \"reward_model\": {\"ground_truth\": \"2\"}}");
            c.add("{\"prompt\": " + prompt + ", \"reward_model\": {\"ground_truth\": \"2\"}}");
        }
        Files.write(dir.resolve("a.jsonl"), a);
        Files.write(dir.resolve("b.jsonl"), b);
        Files.write(dir.resolve("c.jsonl"), c);
        Rows rows = Dataset.read(dir.toString(), null, null).examples();
        assertEquals(oneByOne(dir.toString(), null, null), new ArrayList<>(rows));
        assertEquals(35 + 2, rows.prompts()); // 7 × 5 distinct sums, and "What is 1 + 1?" as text and after a system turn
        assertEquals(1506, rows.size());
        for (int i = 0; i < rows.size(); i++) {
            assertEquals(rows.get(i).source(), rows.where(i));
            assertEquals(rows.get(i).source().substring(0, rows.get(i).source().lastIndexOf(':')), rows.fileOf(i));
            for (int j : new int[] {0, 35, 1234, 1500, 1502, 1504}) {
                assertEquals(java.util.Objects.equals(rows.get(i).messages(), rows.get(j).messages())
                        && rows.get(i).question().equals(rows.get(j).question()), rows.promptOf(i) == rows.promptOf(j), i + " vs " + j);
            }
        }
        // a subset keeps each row's place, across the files
        int[] pick = {0, 1, 499, 500, 501, 1499, 1505};
        Rows some = rows.keep(pick);
        for (int k = 0; k < pick.length; k++) {
            assertEquals(rows.get(pick[k]), some.get(k));
            assertEquals(rows.fileOf(pick[k]), some.fileOf(k));
        }
        assertEquals(new ArrayList<>(rows.subList(0, 3)), new ArrayList<>(rows.head(3)));
        assertEquals(Example.Labels.NONE, Dataset.load(DIR.resolve("gsm8k.parquet").toString(), null, null).get(0).labels());
    }

    @Test
    void rowsKeepTheirDataSourceLevelAndType() {
        for (String ext : new String[] {".parquet", ".jsonl"}) {
            assertEquals(new Example.Labels("klrl/arith", null, null),
                    Dataset.load(DIR.resolve("verl" + ext).toString(), null, null).get(2).labels(), ext);
            assertEquals(new Example.Labels(null, "Level 1", "Prealgebra"),
                    Dataset.load(DIR.resolve("math" + ext).toString(), null, null).get(0).labels(), ext);
            assertEquals(Example.Labels.NONE, Dataset.load(DIR.resolve("gsm8k" + ext).toString(), null, null).get(1).labels(), ext);
        }
    }

    @Test
    void promptsMeasuredInABatchHaveTheTokenCountsOfTheirOwnEncoding() throws IOException {
        try (Tokenizer qwen = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            for (String spec : fixtures()) {
                List<Example> ex = Dataset.load(spec, null, null);
                for (String template : new String[] {"{question}", "Solve: {question} Think step by step."}) {
                    Prompts p = new Prompts(qwen, new Prompts.Format(template, "Be brief.", true, 256));
                    Prompts.Measured m = p.measure(ex);
                    assertEquals(null, m.error(), spec);
                    assertArrayEquals(ex.stream().mapToInt(e -> p.ids(e).length).toArray(), m.tokens(), spec);
                }
            }
            // a prompt that cannot be rendered ends the batch, its error kept
            List<Example> ex = new ArrayList<>(Dataset.load(DIR.resolve("verl.jsonl").toString(), null, null));
            Prompts plain = new Prompts(qwen, new Prompts.Format("{question}", null, false, 256));
            ex.add(0, new Example("What is 1 + 1?", "2", "mixed.jsonl:1"));
            Prompts.Measured m = plain.measure(ex);
            assertEquals(1, m.tokens().length);
            assertTrue(m.error().getMessage().startsWith(DIR.resolve("verl.jsonl") + ":1: the prompt is a message list"), m.error().getMessage());
        }
    }

    /** Overwrites, in a copy of verl.parquet, every column chunk under {@code column} with bytes no reader can decode. */
    Path damaged(String column) throws IOException {
        Path f = tmp.resolve("verl-" + column + ".parquet");
        Files.copy(DIR.resolve("verl.parquet"), f);
        List<ColumnChunkMetaData> chunks;
        try (ParquetFileReader r = ParquetFileReader.open(new LocalInputFile(f))) {
            chunks = r.getFooter().getBlocks().get(0).getColumns();
        }
        int hit = 0;
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
            for (ColumnChunkMetaData c : chunks) {
                if (c.getPath().toArray()[0].equals(column)) {
                    byte[] junk = new byte[(int) c.getTotalSize()];
                    java.util.Arrays.fill(junk, (byte) 0xFF);
                    ch.write(java.nio.ByteBuffer.wrap(junk), c.getStartingPos());
                    hit++;
                }
            }
        }
        assertTrue(hit > 0, column);
        return f;
    }

    @Test
    void parquetColumnsNoMappingUsesAreNeverRead() throws IOException {
        List<Example> expected = Dataset.load(DIR.resolve("verl.parquet").toString(), null, null);
        // extra_info and ability are neither a prompt, an answer nor a label: damaged, the set reads the same
        for (String column : new String[] {"extra_info", "ability"}) {
            Path f = damaged(column);
            List<Example> got = Dataset.load(f.toString(), null, null);
            assertEquals(expected.stream().map(e -> List.of(e.question(), e.messages(), e.gold())).toList(),
                    got.stream().map(e -> List.of(e.question(), e.messages(), e.gold())).toList(), column);
        }
        // read when a field names it: then the damage is refused, naming the file
        Path f = tmp.resolve("verl-extra_info.parquet");
        UserError named = assertThrows(UserError.class, () -> Dataset.load(f.toString(), "extra_info.question", "extra_info.answer"));
        assertTrue(named.getMessage().startsWith(f + ": not a readable parquet file ("), named.getMessage());
        // the gold answers' column is read
        Path gold = damaged("reward_model");
        UserError e = assertThrows(UserError.class, () -> Dataset.load(gold.toString(), null, null));
        assertTrue(e.getMessage().startsWith(gold + ": not a readable parquet file ("), e.getMessage());
    }
}
