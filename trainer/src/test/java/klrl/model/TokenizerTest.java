package klrl.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import klrl.TestPaths;
import klrl.util.Json;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;

/** Real Qwen2.5 and Llama-3.1 tokenizer files, and chat templates against Python Jinja2 renderings. */
class TokenizerTest {

    static final String[] TEXTS = {
        "What is 12+34? The answer is \\boxed{46}.",
        "Let $x^2 - 5x + 6 = 0$. Then x \\in \\{2, 3\\}.",
        "  leading spaces, tabs\tand\nnewlines\n\n",
        "Ünïcödé — π ≈ 3.14159 and 数学 🤖",
    };

    @Test
    void qwenEncodesDigitsOneByOneAndKnowsItsSpecialTokens() {
        try (Tokenizer t = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            assertEquals(8, t.encode("12+34=46").length);
            assertEquals(151643, t.tokenId("<|endoftext|>"));
            assertEquals(151644, t.tokenId("<|im_start|>"));
            assertEquals(151645, t.tokenId("<|im_end|>"));
            // generation_config.json lists both stop tokens
            assertEquals(List.of(151645L, 151643L), t.eosIds());
            assertEquals(151643L, t.padId());
        }
    }

    /** Many texts in one call (data sets measure their prompts so): each gets the ids a call of its own gives, unpadded. */
    @Test
    void batchEncodingGivesEachTextItsOwnIds() {
        List<String> texts = new ArrayList<>(List.of(TEXTS));
        texts.add("x");
        texts.add("The quick brown fox jumps over the lazy dog. ".repeat(300)); // far longer than the others: nothing padded
        for (String model : List.of("qwen2.5", "llama3.1")) {
            try (Tokenizer t = Tokenizer.load(TestPaths.model(model))) {
                texts.add(t.applyChatTemplate(List.of(new ChatTemplate.Message("user", "What is 2 + 3?")), true));
                long[][] batch = t.encodeBatch(texts);
                assertEquals(texts.size(), batch.length);
                for (int i = 0; i < texts.size(); i++) {
                    assertArrayEquals(t.encode(texts.get(i)), batch[i], model + ": text " + i);
                }
                assertEquals(0, t.encodeBatch(List.of()).length);
                texts.remove(texts.size() - 1);
            }
        }
    }

    @Test
    void aTokenizerOtherThanBpeEncodesABatchOneTextAtATime(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        assertEquals("BPE", Tokenizer.modelType(TestPaths.model("qwen2.5").resolve("tokenizer.json")));
        // a WordPiece vocabulary of three words: the batch path the binding would unwrap natively is not taken
        java.nio.file.Files.writeString(dir.resolve("tokenizer.json"), """
                {"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
                 "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
                 "model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
                          "vocab":{"[UNK]":0,"two":1,"plus":2,"three":3,"##s":4}}}
                """);
        assertEquals("WordPiece", Tokenizer.modelType(dir.resolve("tokenizer.json")));
        try (Tokenizer t = Tokenizer.load(dir)) {
            List<String> texts = List.of("two plus three", "threes plus two", "four");
            long[][] batch = t.encodeBatch(texts);
            assertArrayEquals(new long[] {1, 2, 3}, batch[0]);
            assertArrayEquals(new long[] {3, 4, 2, 1}, batch[1]);
            assertArrayEquals(new long[] {0}, batch[2]);
        }
    }

    @Test
    void llamaKnowsItsSpecialTokensAndStopIds() {
        try (Tokenizer t = Tokenizer.load(TestPaths.model("llama3.1"))) {
            assertEquals(128000, t.tokenId("<|begin_of_text|>"));
            assertEquals(128009, t.tokenId("<|eot_id|>"));
            assertEquals(List.of(128001L, 128008L, 128009L), t.eosIds());
        }
    }

    @Test
    void realTokenizersRoundTrip() {
        for (String model : List.of("qwen2.5", "llama3.1")) {
            try (Tokenizer t = Tokenizer.load(TestPaths.model(model))) {
                for (String s : TEXTS) {
                    long[] ids = t.encode(s);
                    assertTrue(ids.length > 0);
                    assertEquals(s, t.decode(ids), model + " round trip");
                }
                // special tokens in text are single tokens and survive decoding
                String chat = t.applyChatTemplate(List.of(new ChatTemplate.Message("user", "hi")), true);
                assertEquals(chat, t.decode(t.encode(chat)));
            }
        }
    }

    @Test
    void longInputsAreNotTruncated() {
        try (Tokenizer t = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            String s = "1 ".repeat(3000);
            assertEquals(6000, t.encode(s).length);
        }
    }

    @Test
    void tinyTokenizerCoversMathAndChat() {
        for (String model : List.of("qwen2-bf16-sharded", "llama3-bf16-sharded")) {
            try (Tokenizer t = Tokenizer.load(TestPaths.fixture(model))) {
                for (String s : TEXTS) {
                    assertEquals(s, t.decode(t.encode(s)));
                }
                assertEquals(1, t.encode("boxed").length, "merged word");
                long[] digits = t.encode("2024");
                assertEquals(4, digits.length, "digits split one per token");
                String chat = t.applyChatTemplate(List.of(new ChatTemplate.Message("user", "1+1")), true);
                long[] ids = t.encode(chat);
                assertEquals(chat, t.decode(ids));
                assertTrue(t.eosIds().size() >= 1);
                for (long e : t.eosIds()) {
                    assertTrue(t.decode(new long[] {e}).startsWith("<|"), "eos is a special token");
                }
            }
        }
    }

    @Test
    void chatTemplatesRenderExactlyAsJinja2() {
        JsonNode cases = Json.read(TestPaths.fixture("chat_templates.json"));
        int n = 0;
        for (JsonNode c : cases) {
            String model = c.get("model").asText();
            Path dir = model.contains("-") ? TestPaths.fixture(model) : TestPaths.model(model);
            List<ChatTemplate.Message> msgs = new ArrayList<>();
            c.get("messages").forEach(m -> msgs.add(new ChatTemplate.Message(m.get("role").asText(), m.get("content").asText())));
            try (Tokenizer t = Tokenizer.load(dir)) {
                String got = t.applyChatTemplate(msgs, c.get("add_generation_prompt").asBoolean());
                assertEquals(c.get("expected").asText(), got, model + " case " + n);
            }
            n++;
        }
        assertEquals(32, n);
    }

    @Test
    void raiseExceptionInTemplateIsAUserError() {
        ChatTemplate t = new ChatTemplate("{{ raise_exception('only user turns') }}", Map.of());
        UserError e = assertThrows(UserError.class, () -> t.render(List.of(), false));
        assertTrue(e.getMessage().contains("only user turns"), e.getMessage());
    }

    @Test
    void strftimeNowIsAvailable() {
        ChatTemplate t = new ChatTemplate("{{ strftime_now('%Y') }}", Map.of());
        assertEquals(String.valueOf(java.time.Year.now().getValue()), t.render(List.of(), false));
    }

    @Test
    void missingTokenizerIsAOneLineError() {
        UserError e = assertThrows(UserError.class, () -> Tokenizer.load(Path.of("/nonexistent")));
        assertTrue(e.getMessage().contains("tokenizer.json"));
    }

    @Test
    void byteLevelEncodingMatchesQwenIds() {
        try (Tokenizer t = Tokenizer.load(TestPaths.model("qwen2.5"))) {
            // byte-level BPE: "a" is id 64 (GPT-2 byte order: '!' is 0), " " alone is 220 ("Ġ")
            assertArrayEquals(new long[] {64}, t.encode("a"));
            assertArrayEquals(new long[] {220}, t.encode(" "));
        }
    }
}
