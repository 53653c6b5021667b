package klrl.data;

import java.util.List;
import klrl.model.ChatTemplate;

/**
 * One problem: its prompt, the gold answer as the row holds it (bare, a solution with \boxed{}, or
 * GSM8K's "… #### N"), and where it came from ("file:row").
 *
 * @param question the prompt's text: a plain-text prompt, or the last user turn of a message list
 * @param messages the prompt as a message list ({role, content} turns, rendered with the chat
 *                 template as they are), or null for a plain-text prompt
 */
public record Example(String question, List<ChatTemplate.Message> messages, String gold, String source) {
    public Example(String question, String gold, String source) {
        this(question, null, gold, source);
    }

    public Example {
        messages = messages == null ? null : List.copyOf(messages);
    }

    /** The gold answer as the verifier reads it. */
    public String goldAnswer() {
        return klrl.rewards.Extractor.gold(gold);
    }
}
