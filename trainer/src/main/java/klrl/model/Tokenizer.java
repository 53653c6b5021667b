package klrl.model;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.huggingface.tokenizers.jni.TokenizersLibrary;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import klrl.util.Json;
import klrl.util.UserError;

/**
 * A model folder's tokenizer.json (through DJL's HF tokenizers binding), its chat template and its
 * stop tokens. Special tokens are never added implicitly: the chat template decides (as in
 * transformers, where apply_chat_template renders bos_token itself).
 */
public final class Tokenizer implements AutoCloseable {
    private final HuggingFaceTokenizer hf;
    private final ChatTemplate template;
    private final List<Long> eosIds;
    private final Long padId;
    private final boolean bpe;

    private Tokenizer(HuggingFaceTokenizer hf, ChatTemplate template, List<Long> eosIds, Long padId, boolean bpe) {
        this.hf = hf;
        this.template = template;
        this.eosIds = eosIds;
        this.padId = padId;
        this.bpe = bpe;
    }

    public static Tokenizer load(Path dir) {
        Path tj = dir.resolve("tokenizer.json");
        if (!Files.isRegularFile(tj)) {
            throw new UserError(tj + ": file not found (the model folder needs a tokenizer.json)");
        }
        HuggingFaceTokenizer hf;
        try {
            // Explicit limits: without maxLength the binding silently truncates at 512 tokens.
            hf = HuggingFaceTokenizer.newInstance(tj, Map.of(
                    "addSpecialTokens", "false", "padding", "false", "truncation", "false",
                    "maxLength", "10000000", "modelMaxLength", "10000000"));
        } catch (IOException | RuntimeException e) {
            throw new UserError(tj + ": cannot load tokenizer (" + Json.firstLine(e.getMessage()) + ")");
        }
        Path tc = dir.resolve("tokenizer_config.json");
        JsonNode cfg = Files.isRegularFile(tc) ? Json.read(tc) : Json.MAPPER.createObjectNode();
        Map<String, Object> specials = new HashMap<>();
        for (String k : List.of("bos_token", "eos_token", "pad_token", "unk_token")) {
            String v = tokenText(cfg.get(k));
            specials.put(k, v == null ? "" : v);
        }
        ChatTemplate template = null;
        JsonNode ct = cfg.get("chat_template");
        if (ct != null && ct.isTextual()) {
            template = new ChatTemplate(ct.asText(), specials);
        } else if (ct != null && ct.isArray()) {
            for (JsonNode n : ct) {
                if (n.path("name").asText().equals("default")) {
                    template = new ChatTemplate(n.path("template").asText(), specials);
                }
            }
        }
        // Stop tokens: generation_config.json, then config.json, then the tokenizer's eos_token.
        LinkedHashSet<Long> eos = new LinkedHashSet<>();
        for (String f : List.of("generation_config.json", "config.json")) {
            Path p = dir.resolve(f);
            if (eos.isEmpty() && Files.isRegularFile(p)) {
                JsonNode e = Json.read(p).get("eos_token_id");
                if (e != null && e.isArray()) {
                    e.forEach(x -> eos.add(x.asLong()));
                } else if (e != null && e.isNumber()) {
                    eos.add(e.asLong());
                }
            }
        }
        Tokenizer tmp = new Tokenizer(hf, template, List.of(), null, false);
        String eosText = (String) specials.get("eos_token");
        if (!eosText.isEmpty()) {
            long id = tmp.tokenId(eosText);
            if (id >= 0) {
                eos.add(id);
            }
        }
        String padText = (String) specials.get("pad_token");
        Long pad = padText.isEmpty() ? null : tmp.tokenId(padText);
        return new Tokenizer(hf, template, new ArrayList<>(eos), pad, "BPE".equals(modelType(tj)));
    }

    /** tokenizer.json's model.type ("BPE", "WordPiece", "Unigram", …), read without building the tree of the vocabulary. */
    static String modelType(Path tj) {
        try (var p = Json.MAPPER.getFactory().createParser(tj.toFile())) {
            if (p.nextToken() != com.fasterxml.jackson.core.JsonToken.START_OBJECT) {
                return null;
            }
            while (p.nextToken() == com.fasterxml.jackson.core.JsonToken.FIELD_NAME) {
                String name = p.currentName();
                p.nextToken();
                if (!name.equals("model") || !p.isExpectedStartObjectToken()) {
                    p.skipChildren();
                    continue;
                }
                while (p.nextToken() == com.fasterxml.jackson.core.JsonToken.FIELD_NAME) {
                    String f = p.currentName();
                    p.nextToken();
                    if (f.equals("type")) {
                        return p.getValueAsString();
                    }
                    p.skipChildren();
                }
                return null;
            }
        } catch (IOException e) {
            return null; // the binding has read the file already; a type it cannot tell only costs the batch encode
        }
        return null;
    }

    private static String tokenText(JsonNode n) {
        if (n == null || n.isNull()) {
            return null;
        }
        return n.isTextual() ? n.asText() : n.path("content").asText(null);
    }

    /** The id of a single token's text, or −1 if it is not one token. */
    public long tokenId(String text) {
        long[] ids = encode(text);
        return ids.length == 1 ? ids[0] : -1;
    }

    public long[] encode(String text) {
        Encoding e = hf.encode(text, false, false);
        return e.getIds();
    }

    /**
     * The ids of each text, as {@link #encode} gives them, in one call: the Hugging Face tokenizer's batch
     * encode, which spreads the texts over every core. Only the ids are fetched from each encoding: the
     * binding's {@code Encoding} also copies out every token's text, character span and masks, which took
     * most of the time of a batch of long prompts.
     */
    public long[][] encodeBatch(List<String> texts) {
        if (texts.isEmpty()) {
            return new long[0][];
        }
        if (!bpe) {
            // The binding's batch encode unwraps the tokenizer's result in native code, so a text a
            // WordPiece, WordLevel or Unigram model cannot encode (no unknown token) would abort the
            // process there, where one-by-one encode raises an error. A BPE model encodes every text (a
            // character outside its vocabulary is dropped or becomes its unknown token).
            long[][] out = new long[texts.size()][];
            for (int i = 0; i < out.length; i++) {
                out[i] = encode(texts.get(i));
            }
            return out;
        }
        TokenizersLibrary lib = TokenizersLibrary.LIB;
        long[] handles = lib.batchEncode(hf.getHandle(), texts.toArray(String[]::new), false);
        long[][] out = new long[handles.length][];
        try {
            for (int i = 0; i < handles.length; i++) {
                out[i] = lib.getTokenIds(handles[i]);
            }
        } finally {
            for (long h : handles) {
                lib.deleteEncoding(h);
            }
        }
        return out;
    }

    /** Decodes keeping special tokens (the binding's default drops them). */
    public String decode(long[] ids) {
        return hf.decode(ids, false);
    }

    public String decodeSkippingSpecial(long[] ids) {
        return hf.decode(ids, true);
    }

    public boolean hasChatTemplate() {
        return template != null;
    }

    public String applyChatTemplate(List<ChatTemplate.Message> messages, boolean addGenerationPrompt) {
        if (template == null) {
            throw new UserError("tokenizer_config.json: no chat_template; use a plain prompt instead");
        }
        return template.render(messages, addGenerationPrompt);
    }

    /** Stop token ids, most specific first (generation_config.json may list several). */
    public List<Long> eosIds() {
        return eosIds;
    }

    /** Padding id: pad_token, else the first EOS (padding is masked out, so any valid id works). */
    public long padId() {
        return padId != null && padId >= 0 ? padId : (eosIds.isEmpty() ? 0 : eosIds.get(0));
    }

    @Override
    public void close() {
        hf.close();
    }
}
