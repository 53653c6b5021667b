package klrl.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import klrl.rewards.Extractor;
import klrl.rewards.Verifier;
import klrl.util.Json;
import klrl.util.UserError;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "verify", mixinStandardHelpOptions = true,
        description = "Check answers with the math verifier: one pair, or a JSONL file of {\"gold\",\"pred\"} lines.")
public final class VerifyCommand implements Callable<Integer> {

    static final class One {
        @Option(names = "--gold", required = true, description = "gold answer or solution (its last \\boxed{} is used)") String gold;
        @Option(names = "--pred", required = true, description = "a completion or a bare answer") String pred;
    }

    static final class Input {
        @ArgGroup(exclusive = false) One one;
        @Option(names = "--jsonl", description = "file with one {\"gold\":…, \"pred\":…} per line; results go to stdout in order")
        Path jsonl;
    }

    @ArgGroup(exclusive = true, multiplicity = "1") Input input;
    @Option(names = "--timeout-ms", defaultValue = "1000", description = "per-check time limit (default: ${DEFAULT-VALUE})") long timeoutMs;

    @Override
    public Integer call() throws IOException {
        Verifier v = new Verifier(timeoutMs, Extractor.DEFAULT);
        if (input.one != null) {
            System.out.println(v.verify(input.one.gold, input.one.pred).correct());
            return 0;
        }
        if (!Files.isRegularFile(input.jsonl)) {
            throw new UserError(input.jsonl + ": file not found");
        }
        long n = 0, correct = 0, t0 = System.nanoTime();
        StringBuilder out = new StringBuilder();
        try (BufferedReader r = Files.newBufferedReader(input.jsonl, StandardCharsets.UTF_8)) {
            String line;
            int lineNo = 0;
            while ((line = r.readLine()) != null) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode j;
                try {
                    j = Json.MAPPER.readTree(line);
                } catch (IOException e) {
                    throw new UserError(input.jsonl + ":" + lineNo + ": not valid JSON");
                }
                if (!j.path("gold").isValueNode() || !j.path("pred").isValueNode() || j.path("gold").isNull()) {
                    throw new UserError(input.jsonl + ":" + lineNo + ": expected {\"gold\": …, \"pred\": …}");
                }
                Verifier.Result res = v.verify(j.get("gold").asText(), j.get("pred").asText());
                ObjectNode o = Json.MAPPER.createObjectNode();
                o.put("correct", res.correct());
                o.put("extracted", res.extracted());
                out.append(Json.write(o)).append('\n');
                n++;
                correct += res.correct() ? 1 : 0;
                if (out.length() > 1 << 16) {
                    System.out.print(out);
                    out.setLength(0);
                }
            }
        }
        System.out.print(out);
        System.out.flush();
        double secs = (System.nanoTime() - t0) / 1e9;
        System.err.printf("verified %d, correct %d (%.1f%%), timeouts %d, %.0f checks/s%n", n, correct,
                n == 0 ? 0 : 100.0 * correct / n, v.timeouts(), n / Math.max(secs, 1e-9));
        return 0;
    }
}
