package klrl.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * .json data files as Hugging Face {@code datasets} reads them: one array of row objects (DeepScaleR's
 * {@code deepscaler.json}, written by Python's {@code json.dump(rows, f, indent=2)}) or JSON lines
 * ({@code Dataset.to_json}); in folders and globs beside .jsonl files; bad ones refused in one line.
 */
class JsonFilesTest {
    @TempDir Path tmp;

    /** DeepScaleR's layout as json.dump(…, indent=2) writes it: problem, answer, solution, nested over lines. */
    static final String DEEPSCALER = """
            [
              {
                "problem": "What is 17 + 25?",
                "answer": "42",
                "solution": "17 + 25 = 42, so the answer is $\\\\boxed{42}$."
              },
              {
                "problem": "What is 8 + 13?",
                "answer": "21",
                "solution": "8 + 13 = 21, so the answer is $\\\\boxed{21}$."
              },
              {
                "problem": "What is 30 + 44?\\nGive the sum \\u2014 a number.",
                "answer": "74",
                "solution": "30 + 44 = 74, so the answer is $\\\\boxed{74}$."
              }
            ]""";

    static final String LINES = """
            {"problem":"What is 5 + 6?","answer":"11","solution":"$\\\\boxed{11}$"}
            {"problem":"What is 7 + 8?","answer":"15","solution":"$\\\\boxed{15}$"}
            """;

    Path write(String name, String text) throws Exception {
        Path f = tmp.resolve(name);
        Files.createDirectories(f.getParent());
        Files.writeString(f, text);
        return f;
    }

    static String error(Path spec) {
        return assertThrows(UserError.class, () -> Dataset.load(spec.toString(), null, null)).getMessage();
    }

    @Test
    void aJsonArrayFileReadsLikeJsonl() throws Exception {
        Path f = write("deepscaler.json", DEEPSCALER);
        Dataset.Loaded l = Dataset.read(f.toString(), null, null);
        assertEquals("3 rows, MATH layout: prompt ← problem, gold ← answer", l.describe());
        assertEquals(List.of("What is 17 + 25?", "What is 8 + 13?", "What is 30 + 44?\nGive the sum — a number."),
                l.examples().stream().map(Example::question).toList());
        assertEquals(List.of("42", "21", "74"), l.examples().stream().map(Example::goldAnswer).toList());
        assertEquals(List.of(f + ":1", f + ":2", f + ":3"), l.examples().stream().map(Example::source).toList());
        // with a byte-order mark and on one line, as other writers make it
        Path bom = write("one-line.json", "\uFEFF" + DEEPSCALER.replace("\n", ""));
        assertEquals(3, Dataset.load(bom.toString(), null, null).size());
    }

    @Test
    void jsonFilesOfArraysOrLinesCountInFoldersAndGlobsBesideJsonl() throws Exception {
        Path dir = tmp.resolve("mixed");
        write("mixed/a.json", DEEPSCALER);
        write("mixed/b.jsonl", LINES);
        write("mixed/c.json", LINES);
        // metadata beside the data is not rows: datasets' own, and any one object over several lines
        write("mixed/dataset_info.json", "{\"description\": \"\", \"citation\": \"\"}");
        write("mixed/meta.json", "{\n  \"name\": \"mixed\",\n  \"rows\": 7\n}\n");
        Dataset.Loaded l = Dataset.read(dir.toString(), null, null);
        assertEquals("7 rows from 3 files, MATH layout: prompt ← problem, gold ← answer", l.describe());
        assertEquals(List.of("42", "21", "74", "11", "15", "11", "15"), l.examples().stream().map(Example::goldAnswer).toList());
        assertEquals(dir.resolve("c.json") + ":1", l.examples().get(5).source());
        // a .json file of JSON lines (Dataset.to_json) named by itself
        Dataset.Loaded lines = Dataset.read(dir.resolve("c.json").toString(), null, null);
        assertEquals("2 rows, MATH layout: prompt ← problem, gold ← answer", lines.describe());
        assertEquals(List.of("11", "15"), lines.examples().stream().map(Example::goldAnswer).toList());
        Dataset.Loaded glob = Dataset.read(dir + "/*.json", null, null);
        assertEquals("5 rows from 2 files, MATH layout: prompt ← problem, gold ← answer", glob.describe());
        Dataset.Loaded both = Dataset.read(dir + "/{a.json,b.jsonl}", null, null);
        assertEquals(5, both.examples().size());
    }

    @Test
    void aJsonFileThatIsNotRowsIsOneLineNamingTheFileAndRow() throws Exception {
        String why = " (a .json data file holds one array of row objects, or one JSON object per line)";
        Path scalar = write("scalar.json", "42\n");
        assertEquals(scalar + ": holds a number, not rows" + why, error(scalar));
        Path text = write("text.json", "\"What is 1 + 1?\"");
        assertEquals(text + ": holds a string, not rows" + why, error(text));
        Path object = write("object.json", "{\n  \"problem\": [\"What is 1 + 1?\"],\n  \"answer\": [\"2\"]\n}\n");
        assertEquals(object + ": holds one JSON object, not rows" + why, error(object));
        Path element = write("element.json", "[{\"problem\": \"What is 1 + 1?\", \"answer\": \"2\"},\n \"What is 2 + 2?\"]");
        assertEquals(element + ":2: element 2 of the array is a string, not a JSON object" + why, error(element));
        Path nested = write("nested.json", "[[{\"problem\": \"What is 1 + 1?\", \"answer\": \"2\"}]]");
        assertEquals(nested + ":1: element 1 of the array is a list, not a JSON object" + why, error(nested));
        Path cut = write("cut.json", DEEPSCALER.substring(0, DEEPSCALER.indexOf("\"problem\": \"What is 8")));
        assertEquals(cut + ": the file ends inside row 2 (a truncated file?)", error(cut));
        Path unclosed = write("unclosed.json", DEEPSCALER.substring(0, DEEPSCALER.lastIndexOf(']')));
        assertEquals(unclosed + ": the file ends after row 3 before the array closes (a truncated file?)", error(unclosed));
        Path broken = write("broken.json", DEEPSCALER.replace("\"answer\": \"21\",", "\"answer\": 21 21,"));
        assertEquals(broken + ":2: not valid JSON (line 9, column", error(broken).replaceFirst("(column).*", "$1"));
        Path two = write("two.json", DEEPSCALER + "\n[]\n");
        assertEquals(two + ": more after the array ends (line 18); a .json data file holds one array of row objects", error(two));
        Path badLine = write("bad-line.json", LINES + "{\"problem\": \n");
        assertEquals(badLine + ":3: not valid JSON" + why, error(badLine));
        Path empty = write("empty.json", "[]");
        assertEquals(empty + ": no rows", error(empty));
        // a .jsonl file is JSON lines whatever it holds: an array there says to name the file .json
        Path arr = write("arr.jsonl", "[{\"question\": \"1+1\", \"answer\": \"2\"}]\n");
        assertEquals(arr + ":1: expected a JSON object per line, found an array (a .jsonl file holds one JSON object per line;"
                + " a file holding one array of rows is read as such when its name ends in .json)", error(arr));
    }
}
