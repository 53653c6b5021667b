package klrl.data;

import java.util.List;
import klrl.model.ChatTemplate;

/**
 * One problem: its prompt, the gold answer as the row holds it (bare, a solution with \boxed{}, or
 * GSM8K's "… #### N"), where it came from ("file:row") and what the row says of its kind.
 *
 * @param question the prompt's text: a plain-text prompt, or the last user turn of a message list
 * @param messages the prompt as a message list ({role, content} turns, rendered with the chat
 *                 template as they are), or null for a plain-text prompt
 * @param labels   the row's data_source, level and type, by which results can be broken down
 */
public record Example(String question, List<ChatTemplate.Message> messages, String gold, String source, Labels labels) {
    public Example(String question, String gold, String source) {
        this(question, null, gold, source, Labels.NONE);
    }

    public Example(String question, List<ChatTemplate.Message> messages, String gold, String source) {
        this(question, messages, gold, source, Labels.NONE);
    }

    public Example {
        messages = messages == null ? null : List.copyOf(messages);
        labels = labels == null ? Labels.NONE : labels;
    }

    /**
     * What a row says of its problem's kind: verl's {@code data_source} ("math_dapo", "openai/gsm8k"), the
     * MATH data set's {@code level} ("Level 5") and {@code type} ("Algebra"); null where the row has none.
     */
    public record Labels(String dataSource, String level, String type) {
        public static final Labels NONE = new Labels(null, null, null);
    }

    /** The gold answer as the verifier reads it. */
    public String goldAnswer() {
        return klrl.rewards.Extractor.gold(gold);
    }
}
