package klrl.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Held-out sets are named by their file or folder, with the folder before it when two share a name. */
class RunDataTest {
    @Test
    void namesOfHeldOutSetsDoNotClash() {
        List<String> verl = List.of("/d/gsm8k/test.parquet", "/d/math/test.parquet", "bundled:arith-test", "/d/aime24.jsonl");
        assertEquals("gsm8k/test", RunData.name(verl.get(0), verl));
        assertEquals("math/test", RunData.name(verl.get(1), verl));
        assertEquals("arith-test", RunData.name(verl.get(2), verl));
        assertEquals("aime24", RunData.name(verl.get(3), verl));
        assertEquals("deepscaler", RunData.name("/d/deepscaler.json", List.of("/d/deepscaler.json")));
    }
}
