package klrl.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import blue.strategic.parquet.ParquetWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import klrl.util.UserError;
import org.apache.parquet.schema.MessageTypeParser;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Parquet rows load with the same field mapping as JSONL. */
class ParquetTest {
    @TempDir Path tmp;

    Path write(String schema, String[] columns, List<String[]> rows) throws Exception {
        Path f = tmp.resolve("rows.parquet");
        try (ParquetWriter<String[]> w = ParquetWriter.writeFile(MessageTypeParser.parseMessageType(schema), f.toFile(),
                (row, out) -> {
                    for (int i = 0; i < columns.length; i++) {
                        out.write(columns[i], row[i]);
                    }
                })) {
            for (String[] r : rows) {
                w.write(r);
            }
        }
        return f;
    }

    @Test
    void parquetRowsLoadLikeTheSameJsonlRows() throws Exception {
        List<String[]> rows = List.of(new String[] {"What is $1+1$?", "So it is $\\boxed{2}$.", "Level 1"},
                new String[] {"Compute $3 \\cdot 4$.", "$\\boxed{12}$", "Level 2"});
        Path pq = write("message m { required binary problem (STRING); required binary solution (STRING); "
                + "optional binary level (STRING); }", new String[] {"problem", "solution", "level"}, rows);
        Path jsonl = tmp.resolve("rows.jsonl");
        Files.writeString(jsonl, "{\"problem\":\"What is $1+1$?\",\"solution\":\"So it is $\\\\boxed{2}$.\"}\n"
                + "{\"problem\":\"Compute $3 \\\\cdot 4$.\",\"solution\":\"$\\\\boxed{12}$\"}\n");
        List<Example> a = Dataset.load(pq.toString(), null, null), b = Dataset.load(jsonl.toString(), null, null);
        assertEquals(2, a.size());
        for (int i = 0; i < 2; i++) {
            assertEquals(b.get(i).question(), a.get(i).question());
            assertEquals(b.get(i).gold(), a.get(i).gold());
        }
        assertEquals(pq + ":2", a.get(1).source());
        // configured field names apply as for JSONL
        assertEquals("Level 1", Dataset.load(pq.toString(), "level", "problem").get(0).question());
        UserError missing = assertThrows(UserError.class, () -> Dataset.load(pq.toString(), "query", null));
        assertTrue(missing.getMessage().contains(pq + ":1: data.prompt_field 'query' not found (expected the prompt; the row has {problem, solution, level})"), missing.getMessage());
    }

    @Test
    void aSnappyFileFromAnotherWriterLoadsAndABadFileIsOneLine() throws Exception {
        Path third = Path.of("src/test/resources/parquet/alltypes_plain.snappy.parquet").toAbsolutePath();
        List<Example> ex = Dataset.load(third.toString(), "id", "double_col");
        assertEquals(2, ex.size());
        assertEquals("6", ex.get(0).question());
        assertEquals("10.1", ex.get(1).gold());
        Path bad = tmp.resolve("bad.parquet");
        Files.writeString(bad, "{\"question\":\"1+1\",\"answer\":\"2\"}\n");
        UserError e = assertThrows(UserError.class, () -> Dataset.load(bad.toString(), null, null));
        assertTrue(e.getMessage().startsWith(bad + ": not a parquet file (it does not begin with \"PAR1\""), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
    }

    @Test
    void anEmptyOrTruncatedFileIsNamedInTheUsersWords() throws Exception {
        byte[] real = Files.readAllBytes(Path.of("src/test/resources/parquet/alltypes_plain.snappy.parquet"));
        Path truncated = tmp.resolve("truncated.parquet"), empty = tmp.resolve("empty.parquet"), tiny = tmp.resolve("tiny.parquet"),
                footer = tmp.resolve("footer.parquet");
        Files.write(truncated, java.util.Arrays.copyOf(real, real.length / 2));
        Files.write(empty, new byte[0]);
        Files.write(tiny, "PAR1".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        // both marks intact, the footer's bytes damaged: parquet-mr's own message, with the path, never its reader object
        byte[] damaged = real.clone();
        for (int i = damaged.length - 60; i < damaged.length - 8; i++) {
            damaged[i] = (byte) 0xff;
        }
        Files.write(footer, damaged);
        String[][] cases = {{truncated.toString(), ": truncated parquet file (it begins with \"PAR1\" but does not end with it"},
            {empty.toString(), ": empty file, expected parquet"}, {tiny.toString(), ": 4 bytes, too short to be a parquet file"},
            {footer.toString(), ": not a readable parquet file ("}};
        for (String[] c : cases) {
            UserError e = assertThrows(UserError.class, () -> Dataset.load(c[0], null, null));
            assertTrue(e.getMessage().startsWith(c[0] + c[1]), e.getMessage());
            assertTrue(!e.getMessage().contains("InputFile@") && e.getMessage().lines().count() == 1, e.getMessage());
        }
    }

    /** Text is decoded as strictly as UTF-8 demands: a real U+FFFD is text, bytes that are not UTF-8 are not. */
    @Test
    void textIsUtf8ExactlyWhereTheBytesAreUtf8() throws Exception {
        var strict = java.nio.charset.StandardCharsets.UTF_8;
        int[][] cases = {
            {'a', '+', '1'}, {0xF0, 0x9F, 0x98, 0x80}, {0xEF, 0xBF, 0xBD}, {'x', 0xEF, 0xBF, 0xBD, 'y'}, // text, an emoji, a real U+FFFD
            {0xFF}, {0xC0, 0xAF}, {0xE2, 0x82}, {0xED, 0xA0, 0x80}, {'a', 0x80}, {0xF4, 0x90, 0x80, 0x80}}; // not UTF-8
        for (int[] c : cases) {
            byte[] b = new byte[c.length];
            for (int i = 0; i < c.length; i++) {
                b[i] = (byte) c[i];
            }
            String expected;
            try {
                expected = strict.newDecoder().decode(java.nio.ByteBuffer.wrap(b)).toString();
            } catch (java.nio.charset.CharacterCodingException e) {
                expected = null;
            }
            assertEquals(expected, Parquet.utf8(b), java.util.Arrays.toString(c));
        }
        assertEquals("\uD83D\uDE00", Parquet.utf8(new byte[] {(byte) 0xF0, (byte) 0x9F, (byte) 0x98, (byte) 0x80}));
        assertEquals("x\uFFFDy", Parquet.utf8(new byte[] {'x', (byte) 0xEF, (byte) 0xBF, (byte) 0xBD, 'y'}));
        assertEquals(null, Parquet.utf8(new byte[] {(byte) 0xFF}));
    }
}
