package klrl.data;

import java.util.ArrayList;
import java.util.List;
import klrl.model.ChatTemplate;
import klrl.model.Tokenizer;
import klrl.util.UserError;

/** Turns an example into prompt token ids: the template, then the chat template (if configured). */
public final class Prompts {
    private final Tokenizer tok;
    private final Format cfg;

    /**
     * How a question becomes a prompt (data.template with {question}, data.system_prompt,
     * data.chat_template) and the longest prompt allowed (data.max_prompt_tokens).
     */
    public record Format(String template, String systemPrompt, boolean chatTemplate, int maxPromptTokens) {}

    public Prompts(Tokenizer tok, Format format) {
        this.tok = tok;
        this.cfg = format;
    }

    /**
     * The prompt as the model sees it: a message list through the chat template as it is (system and
     * earlier turns kept, the generation prompt added); a plain-text prompt through data.template,
     * data.system_prompt and the chat template.
     */
    public String text(Example e) {
        if (e.messages() != null) {
            if (!cfg.chatTemplate()) {
                throw new UserError(e.source() + ": the prompt is a message list, which the model's chat template renders;"
                        + " data.chat_template is false");
            }
            try {
                return tok.applyChatTemplate(e.messages(), true);
            } catch (UserError u) { // e.g. a template that refuses a system turn: say which row
                throw new UserError(e.source() + ": " + u.getMessage());
            }
        }
        String user = cfg.template().replace("{question}", e.question());
        if (!cfg.chatTemplate()) {
            return user;
        }
        List<ChatTemplate.Message> msgs = new ArrayList<>();
        if (cfg.systemPrompt() != null) {
            msgs.add(new ChatTemplate.Message("system", cfg.systemPrompt()));
        }
        msgs.add(new ChatTemplate.Message("user", user));
        return tok.applyChatTemplate(msgs, true);
    }

    /** The prompt's token ids; one over data.max_prompt_tokens is refused naming its row. */
    public long[] ids(Example e) {
        long[] ids = encode(e);
        if (ids.length > cfg.maxPromptTokens()) {
            throw overlong(e.source(), ids.length);
        }
        return ids;
    }

    /** The prompt's token ids, however many (data.overlong_prompts: filter measures them to drop the long ones). */
    public long[] encode(Example e) {
        long[] ids = tok.encode(text(e));
        if (ids.length == 0) {
            throw empty(e.source());
        }
        return ids;
    }

    /** The refusal of a row whose prompt has {@code n} tokens, over data.max_prompt_tokens. */
    public UserError overlong(String where, int n) {
        return new UserError(where + ": prompt has " + n + " tokens, more than data.max_prompt_tokens=" + cfg.maxPromptTokens());
    }

    /** The refusal of a row whose prompt renders to no tokens. */
    public static UserError empty(String where) {
        return new UserError(where + ": empty prompt");
    }

    /**
     * How a batch of prompts measured: the token count of each, up to the first that cannot be rendered, whose
     * error is kept (else null).
     */
    public record Measured(int[] tokens, UserError error) {}

    /**
     * The token counts of these prompts, rendered and encoded together (the tokenizer's batch encode, over
     * every core): the same counts as {@link #encode} gives each. The first prompt, in order, that cannot be
     * rendered ends the batch.
     */
    public Measured measure(List<Example> batch) {
        // rendered on every core (the chat template's renderer is shared and thread-safe): the first error in order ends the batch
        String[] texts = new String[batch.size()];
        UserError[] errors = new UserError[batch.size()];
        java.util.stream.IntStream.range(0, batch.size()).parallel().forEach(i -> {
            try {
                texts[i] = text(batch.get(i));
            } catch (UserError u) {
                errors[i] = u;
            }
        });
        int ok = 0;
        while (ok < texts.length && errors[ok] == null) {
            ok++;
        }
        long[][] ids = tok.encodeBatch(java.util.Arrays.asList(texts).subList(0, ok));
        int[] n = new int[ids.length];
        for (int i = 0; i < n.length; i++) {
            n[i] = ids[i].length;
        }
        return new Measured(n, ok < texts.length ? errors[ok] : null);
    }

    /** The longest prompt allowed, data.max_prompt_tokens. */
    public int maxTokens() {
        return cfg.maxPromptTokens();
    }
}
