package klrl.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * Writes a complete, small HF model folder with seeded random weights: config.json,
 * model.safetensors, a byte-level BPE tokenizer.json (every UTF-8 string encodes; digits stay one
 * per token as in Qwen2.5), tokenizer_config.json with a chat template, generation_config.json.
 * Weights are drawn in Java from a SplittableRandom, so a seed gives the same bytes everywhere.
 */
public final class TinyModel {

    /** Shape of the tiny model; defaults are the CPU test size. */
    public record Spec(String arch, int hidden, int layers, int heads, int kvHeads, int intermediate,
                       long seed, String dtype, long maxShardBytes, boolean tied, double initStd, int vocabSize) {
        public Spec {
            if (!arch.equals("qwen2") && !arch.equals("llama")) {
                throw new UserError("--arch must be qwen2 or llama, got '" + arch + "'");
            }
            if (hidden % heads != 0 || heads % kvHeads != 0) {
                throw new UserError("tiny model: hidden must divide by heads and heads by kv-heads");
            }
        }

        public static Spec defaults(String arch, long seed) {
            return new Spec(arch, 64, 2, 4, 2, 176, seed, "F32", Long.MAX_VALUE, false, 0.02, 0);
        }

        /** The same shape and seed with a larger vocabulary (ids past the tokenizer are valid, unused). */
        public Spec withVocab(int v) {
            return new Spec(arch, hidden, layers, heads, kvHeads, intermediate, seed, dtype, maxShardBytes, tied, initStd, v);
        }
    }

    /** Words merged into single tokens so prompts and answers are short. */
    private static final List<String> MERGED_WORDS = List.of("boxed", "Ġanswer", "ĠThe", "The", "Ġis", "What",
            "user", "assistant", "system", "Answer", "Compute", "Ġthe", "Ġin", "Ġof", "Ġand", "Ġa", "Ġto");

    private TinyModel() {}

    public static void write(Path out, Spec s) throws IOException {
        Files.createDirectories(out);
        // Tokenizer: 256 byte symbols, word merges, then the chat's special tokens.
        List<String> byteSyms = byteSymbols();
        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (String b : byteSyms) {
            vocab.put(b, vocab.size());
        }
        List<String> merges = new ArrayList<>();
        for (String w : MERGED_WORDS) {
            String cur = w.substring(0, 1);
            for (int i = 1; i < w.length(); i++) {
                String next = cur + w.charAt(i);
                if (!vocab.containsKey(next)) {
                    merges.add(cur + " " + w.charAt(i));
                    vocab.put(next, vocab.size());
                }
                cur = next;
            }
        }
        boolean qwen = s.arch().equals("qwen2");
        List<String> specials = qwen ? List.of("<|endoftext|>", "<|im_start|>", "<|im_end|>")
                : List.of("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>");
        int firstSpecial = vocab.size();
        int vocabSize = Math.max(s.vocabSize(), ((firstSpecial + specials.size() + 63) / 64) * 64);
        writeTokenizerJson(out.resolve("tokenizer.json"), vocab, merges, specials, firstSpecial);

        int eos = qwen ? firstSpecial + 2 : firstSpecial + 4; // <|im_end|> / <|eot_id|>
        int bos = firstSpecial;                                // <|endoftext|> / <|begin_of_text|>
        ObjectNode tc = Json.MAPPER.createObjectNode();
        tc.put("tokenizer_class", "PreTrainedTokenizerFast");
        tc.put("model_max_length", 4096);
        if (qwen) {
            tc.putNull("bos_token");
            tc.put("eos_token", "<|im_end|>");
            tc.put("pad_token", "<|endoftext|>");
            tc.put("chat_template", "{%- for message in messages %}\n"
                    + "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
                    + "{%- endfor %}\n"
                    + "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n");
        } else {
            tc.put("bos_token", "<|begin_of_text|>");
            tc.put("eos_token", "<|eot_id|>");
            tc.put("chat_template", "{{- bos_token }}\n{%- for message in messages %}\n"
                    + "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
                    + "{%- endfor %}\n"
                    + "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n");
        }
        Json.writeAtomically(out.resolve("tokenizer_config.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(tc));

        ObjectNode gc = Json.MAPPER.createObjectNode();
        gc.put("bos_token_id", bos);
        gc.putArray("eos_token_id").add(eos).add(qwen ? firstSpecial : firstSpecial + 1);
        if (qwen) {
            gc.put("pad_token_id", firstSpecial);
        }
        Json.writeAtomically(out.resolve("generation_config.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(gc));

        ObjectNode c = Json.MAPPER.createObjectNode();
        c.putArray("architectures").add(qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
        c.put("model_type", s.arch());
        c.put("vocab_size", vocabSize);
        c.put("hidden_size", s.hidden());
        c.put("intermediate_size", s.intermediate());
        c.put("num_hidden_layers", s.layers());
        c.put("num_attention_heads", s.heads());
        c.put("num_key_value_heads", s.kvHeads());
        c.put("hidden_act", "silu");
        c.put("max_position_embeddings", 4096);
        c.put("rms_norm_eps", qwen ? 1e-6 : 1e-5);
        c.put("rope_theta", qwen ? 1000000.0 : 500000.0);
        c.put("tie_word_embeddings", s.tied());
        c.put("bos_token_id", bos);
        c.put("eos_token_id", eos);
        c.put("torch_dtype", s.dtype().equals("BF16") ? "bfloat16" : s.dtype().equals("F16") ? "float16" : "float32");
        if (qwen) {
            c.put("use_sliding_window", false);
        } else {
            c.put("attention_bias", false);
            c.put("mlp_bias", false);
            // Llama-3.1's rope scaling, shrunk so the tiny context reaches every frequency band.
            ObjectNode rs = c.putObject("rope_scaling");
            rs.put("rope_type", "llama3");
            rs.put("factor", 8.0);
            rs.put("low_freq_factor", 1.0);
            rs.put("high_freq_factor", 4.0);
            rs.put("original_max_position_embeddings", 64);
        }
        Json.writeAtomically(out.resolve("config.json"), Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(c));

        ModelConfig cfg = ModelConfig.load(out);
        SplittableRandom rng = new SplittableRandom(s.seed());
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> tensors = new LinkedHashMap<>();
            for (var e : cfg.expectedTensors().entrySet()) {
                long n = SafeTensors.numel(e.getValue());
                float[] v = new float[(int) n];
                boolean norm = e.getKey().endsWith("norm.weight");
                for (int i = 0; i < n; i++) {
                    // norms near 1 and the rest N(0, std²) (HF's initializer_range is 0.02); biases random so tests see them
                    v[i] = norm ? (float) (1.0 + 0.1 * rng.nextDouble(-1, 1)) : (float) (s.initStd() * gaussian(rng));
                }
                tensors.put(e.getKey(), m.create(v, new ai.djl.ndarray.types.Shape(e.getValue())));
            }
            SafeTensors.write(out, tensors, s.dtype(), s.maxShardBytes());
        }
    }

    public static double gaussian(SplittableRandom r) {
        // Box–Muller from SplittableRandom (its nextGaussian is Java 17+ only via RandomGenerator, and
        // the exact algorithm is spelled out here so the bytes never depend on the JDK).
        double u1 = r.nextDouble(), u2 = r.nextDouble();
        return Math.sqrt(-2 * Math.log1p(-u1)) * Math.cos(2 * Math.PI * u2);
    }

    /** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards. */
    static List<String> byteSymbols() {
        String[] sym = new String[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            sym[b] = printable ? String.valueOf((char) b) : String.valueOf((char) (256 + n++));
        }
        return List.of(sym);
    }

    private static void writeTokenizerJson(Path file, Map<String, Integer> vocab, List<String> merges,
                                           List<String> specials, int firstSpecial) throws IOException {
        ObjectNode root = Json.MAPPER.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < specials.size(); i++) {
            ObjectNode t = added.addObject();
            t.put("id", firstSpecial + i);
            t.put("content", specials.get(i));
            t.put("single_word", false);
            t.put("lstrip", false);
            t.put("rstrip", false);
            t.put("normalized", false);
            t.put("special", true);
        }
        root.putNull("normalizer");
        // Qwen2's pre-tokenizer: split digits one by one, then byte-level.
        ObjectNode pre = root.putObject("pre_tokenizer");
        pre.put("type", "Sequence");
        ArrayNode pts = pre.putArray("pretokenizers");
        ObjectNode split = pts.addObject();
        split.put("type", "Split");
        split.putObject("pattern").put("Regex",
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
        split.put("behavior", "Isolated");
        split.put("invert", false);
        ObjectNode bl = pts.addObject();
        bl.put("type", "ByteLevel");
        bl.put("add_prefix_space", false);
        bl.put("trim_offsets", false);
        bl.put("use_regex", false);
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "ByteLevel");
        post.put("add_prefix_space", false);
        post.put("trim_offsets", false);
        post.put("use_regex", false);
        ObjectNode dec = root.putObject("decoder");
        dec.put("type", "ByteLevel");
        dec.put("add_prefix_space", false);
        dec.put("trim_offsets", false);
        dec.put("use_regex", false);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.putNull("unk_token");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", false);
        ObjectNode v = model.putObject("vocab");
        vocab.forEach(v::put);
        ArrayNode mg = model.putArray("merges");
        merges.forEach(mg::add);
        Json.writeAtomically(file, Json.MAPPER.writeValueAsString(root));
    }
}
