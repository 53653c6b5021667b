package klrl.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ArithmeticTest {
    @TempDir Path tmp;

    /** The bundled files are exactly what the generator writes, so they can be rebuilt and checked. */
    @Test
    void bundledFilesAreTheGeneratorsOutput() throws Exception {
        Arithmetic.write(tmp, 400);
        for (String name : List.of("arith-train", "arith-test", "ood-sub", "ood-three", "ood-words", "warmup-families")) {
            try (var in = Arithmetic.class.getResourceAsStream("/data/" + name + ".jsonl")) {
                assertEquals(Files.readString(tmp.resolve(name + ".jsonl")), new String(in.readAllBytes()), name);
            }
        }
    }

    @Test
    void outOfDomainTestSetsAreDisjointFromTheWarmUpAndRlData() {
        Set<String> seen = new HashSet<>();
        Dataset.load(Dataset.BUNDLED_WARMUP_FAMILIES, null, null).forEach(e -> seen.add(e.question()));
        Dataset.load(Dataset.BUNDLED_TRAIN, null, null).forEach(e -> seen.add(e.question()));
        assertEquals(3200 + 3 * Arithmetic.WARMUP_PER_FAMILY, seen.size());
        for (String set : Arithmetic.OOD_SETS) {
            List<Example> ex = Dataset.load("bundled:" + set, null, null);
            assertEquals(Arithmetic.OOD_TEST, ex.size());
            for (Example e : ex) {
                assertTrue(!seen.contains(e.question()), set + ": " + e.question() + " is also a training question");
                String[] ops = e.question().split("\\+|-| plus ");
                long v = Long.parseLong(ops[0].strip());
                for (int i = 1; i < ops.length; i++) {
                    v += (e.question().contains("-") ? -1 : 1) * Long.parseLong(ops[i].strip());
                }
                assertEquals(Long.toString(v), e.gold(), e.question());
            }
        }
        // the phrasing family is the held-out sums' pairs, word for word
        List<Example> sums = Dataset.load(Dataset.BUNDLED_TEST, null, null);
        List<Example> words = Dataset.load("bundled:ood-words", null, null);
        for (int i = 0; i < words.size(); i++) {
            assertEquals(sums.get(i).question().replace("+", " plus "), words.get(i).question());
        }
    }
}
