package klrl.cli;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.concurrent.Callable;
import klrl.model.ChatTemplate;
import klrl.model.Decoder;
import klrl.model.Tokenizer;
import klrl.rollout.RolloutEngine;
import klrl.rollout.Sample;
import klrl.rollout.SamplingParams;
import klrl.util.Json;
import klrl.util.Runtime;
import klrl.util.UserError;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Sample continuations with the rollout engine (temperature 0 = greedy; stops at EOS).")
public final class GenerateCommand implements Callable<Integer> {
    @Mixin ModelOptions opts;

    static final class Input {
        @Option(names = "--prompt", description = "prompt text") String prompt;
        @Option(names = "--input-ids", description = "comma-separated prompt token ids") String inputIds;
    }

    @ArgGroup(exclusive = true, multiplicity = "1") Input input;
    @Option(names = "--chat", description = "wrap --prompt as a user message in the chat template") boolean chat;
    @Option(names = "--max-new-tokens", required = true) int maxNew;
    @Option(names = "--temperature", defaultValue = "0") double temperature;
    @Option(names = "--top-p", defaultValue = "1") double topP;
    @Option(names = "--top-k", defaultValue = "0") int topK;
    @Option(names = "--num-samples", defaultValue = "1") int numSamples;
    @Option(names = "--seed", defaultValue = "0") long seed;
    @Option(names = "--stop", description = "stop string (repeatable)") List<String> stops;
    @Option(names = "--json", description = "print {\"samples\":[{\"token_ids\":[...],\"text\":...}]}") boolean json;

    @Override
    public Integer call() {
        SamplingParams sp = new SamplingParams(maxNew, temperature, topP, topK, numSamples, stops, seed);
        try (NDManager root = NDManager.newBaseManager(Runtime.device(opts.device), "PyTorch");
             Tokenizer tok = Tokenizer.load(opts.model);
             Decoder model = Decoder.load(opts.model, root, Runtime.dtype(opts.dtype))) {
            long[] ids;
            if (input.inputIds != null) {
                if (chat) {
                    throw new UserError("--chat applies to --prompt, not --input-ids");
                }
                ids = Ids.parse(input.inputIds, "--input-ids", model.config.vocabSize());
            } else {
                String text = chat ? tok.applyChatTemplate(List.of(new ChatTemplate.Message("user", input.prompt)), true)
                        : input.prompt;
                ids = tok.encode(text);
            }
            if (ids.length == 0) {
                throw new UserError("--prompt encodes to no tokens");
            }
            RolloutEngine engine = new RolloutEngine(model, tok.eosIds(), tok::decode);
            List<Sample> samples = engine.generate(List.of(ids), sp, root);
            if (json) {
                ObjectNode o = Json.MAPPER.createObjectNode();
                ArrayNode arr = o.putArray("samples");
                for (Sample s : samples) {
                    ObjectNode so = arr.addObject();
                    ArrayNode ti = so.putArray("token_ids");
                    for (long t : s.responseIds()) {
                        ti.add(t);
                    }
                    so.put("text", tok.decode(s.responseIds()));
                    so.put("finish_reason", s.finishReason());
                }
                System.out.println(Json.write(o));
            } else {
                for (Sample s : samples) {
                    System.out.println(tok.decode(s.responseIds()));
                }
            }
        }
        return 0;
    }
}
