package klrl.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import klrl.data.Dataset;
import klrl.data.Example;
import klrl.data.Rows;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** data-load's sets: DAPO-Math-17k's layout and shape, the same rows as JSONL and as parquet. */
class DataLoadBenchTest {
    @TempDir Path tmp;

    @Test
    void theBenchsJsonlAndParquetHoldTheSameDapoShapedRows() throws Exception {
        Path jsonl = tmp.resolve("d.jsonl"), parquet = tmp.resolve("d.parquet");
        DataLoadBench.writeJsonl(jsonl, 1000, 10);
        DataLoadBench.writeParquet(parquet, 1000, 10);
        Dataset.Loaded j = Dataset.read(jsonl.toString(), null, null), p = Dataset.read(parquet.toString(), null, null);
        for (Dataset.Loaded l : List.of(j, p)) {
            assertEquals("1000 rows, verl layout: prompt ← prompt, gold ← reward_model.ground_truth", l.describe());
            Rows rows = l.examples();
            assertEquals(10, rows.prompts());
            assertEquals(rows.promptOf(3), rows.promptOf(13)); // row r holds problem r mod 10
            Example e = rows.get(3);
            assertTrue(e.question().startsWith(DataLoadBench.INSTRUCTION + "Problem 4. ") && e.question().endsWith(DataLoadBench.REMINDER),
                    e.question());
            assertEquals("user", e.messages().get(0).role());
            assertEquals(new Example.Labels("math_dapo", null, null), e.labels());
        }
        List<List<Object>> fromJsonl = new ArrayList<>(), fromParquet = new ArrayList<>();
        j.examples().forEach(e -> fromJsonl.add(List.of(e.messages(), e.gold())));
        p.examples().forEach(e -> fromParquet.add(List.of(e.messages(), e.gold())));
        assertEquals(fromJsonl, fromParquet);
    }
}
