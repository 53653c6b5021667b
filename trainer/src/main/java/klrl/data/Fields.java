package klrl.data;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import klrl.model.ChatTemplate;
import klrl.util.UserError;

/**
 * Which field of a row is the prompt and which the gold answer. Paths are dotted
 * ({@code reward_model.ground_truth}, {@code extra_info.answer}; a number indexes a list). With no
 * setting the layout is detected over the first rows ({@link #DETECT_ROWS}) — verl ({@code prompt} message list +
 * {@code reward_model.ground_truth}), TRL ({@code prompt} text or message list + {@code solution}),
 * {@code messages} lists, MATH ({@code problem}/{@code solution} or {@code answer}), GSM8K
 * ({@code question}/{@code answer}) — and the same paths then apply to every row. A value that is not
 * what the path should hold (a struct, a list that is not a message list, null, empty text) is an
 * error naming the row and the path, never text made of it.
 */
final class Fields {
    private Fields() {}

    // a row with both keeps its messages as SFT data (problem, solution, messages: NuminaMath, OpenR1): the problem is the prompt
    static final List<String> PROMPTS = List.of("prompt", "problem", "question", "messages"),
            ANSWERS = List.of("reward_model.ground_truth", "answer", "solution", "gold");

    /**
     * The mapping of one data set.
     *
     * @param prompt        path of the prompt
     * @param answer        path of the gold answer; null = the last assistant turn of a {@code messages} list
     * @param promptSetting the setting that named the prompt path ("data.prompt_field"), or null if detected
     * @param answerSetting likewise for the answer
     * @param promptKey     the setting that names a prompt path ("data.prompt_field"), for messages
     * @param answerKey     likewise for the answer
     * @param layout        the layout's name, e.g. "verl layout"
     */
    record Mapping(String prompt, String answer, String promptSetting, String answerSetting, String promptKey, String answerKey,
                   String layout) {
        Example example(JsonNode row, String where) {
            JsonNode p = at(row, prompt);
            String label = label(promptSetting, prompt);
            if (!(p != null && p.isArray())) {
                if (answer == null) {
                    messages(p, where, label); // the gold is a reply in a message list: refused as not one
                }
                return new Example(text(p, row, where, label, "the prompt"), null,
                        text(at(row, answer), row, where, label(answerSetting, answer), "the gold answer"), where, labels(row));
            }
            List<ChatTemplate.Message> msgs = messages(p, where, label);
            ChatTemplate.Message last = msgs.get(msgs.size() - 1);
            boolean replied = last.role().equals("assistant");
            String gold;
            if (answer == null) { // the reply is the gold answer, not part of the prompt
                if (msgs.size() < 2 || !replied) {
                    throw new UserError(where + ": " + prompt + " has no final assistant turn to take the gold answer from;"
                            + " set " + answerKey);
                }
                gold = nonEmpty(last.content(), where, prompt + "'s last assistant turn");
                msgs = msgs.subList(0, msgs.size() - 1);
            } else if (replied) { // the model would be shown the answer it is asked for
                throw new UserError(where + ": " + label + " ends with an assistant turn, which would be part of the prompt while"
                        + " the gold answer is " + answer + "; give a prompt without the reply (" + promptKey + ")");
            } else {
                gold = text(at(row, answer), row, where, label(answerSetting, answer), "the gold answer");
            }
            return new Example(lastUser(msgs, where, label), msgs, gold, where, labels(row));
        }

        String describe() {
            return layout + ": prompt ← " + prompt + ", gold ← " + (answer == null ? prompt + "'s last assistant turn" : answer);
        }
    }

    /** The columns results can be broken down by: verl's data_source, MATH's level and type. */
    static final List<String> LABELS = List.of("data_source", "level", "type");

    /** The row's {@link #LABELS}, each where it is text or a number (else null). */
    static Example.Labels labels(JsonNode row) {
        String[] v = new String[LABELS.size()];
        for (int i = 0; i < v.length; i++) {
            JsonNode n = row.get(LABELS.get(i));
            v[i] = n != null && (n.isTextual() || n.isNumber()) ? n.asText() : null;
        }
        return v[0] == null && v[1] == null && v[2] == null ? Example.Labels.NONE : new Example.Labels(v[0], v[1], v[2]);
    }

    /** How many rows, from the first, the layout is decided over (all of a smaller set). */
    static final int DETECT_ROWS = 1000;

    /**
     * The mapping for a data set whose first rows (up to {@link #DETECT_ROWS}) are {@code head}; a null setting
     * is detected: the first path of {@link #PROMPTS} / {@link #ANSWERS} that any of these rows holds (not
     * null). A null in one row so never chooses another field for every row: that row is refused later, by
     * its file and row, as not holding the chosen field. {@code promptKey} / {@code answerKey} name the
     * settings in messages (data.prompt_field, eval.answer_field); {@code where} is the first row's place.
     */
    static Mapping detect(List<JsonNode> head, String promptField, String answerField, String promptKey, String answerKey,
                          String where) {
        JsonNode first = head.get(0);
        String p = promptField != null ? promptField : firstPresent(head, PROMPTS);
        if (p == null) {
            throw new UserError(where + ": no prompt field; expected one of " + PROMPTS + " (the row has "
                    + keys(first) + "; set " + promptKey + ", a dotted path such as extra_info.question)");
        }
        String a = answerField != null ? answerField : firstPresent(head, ANSWERS);
        JsonNode pv = firstValue(head, p);
        boolean msgs = pv != null && pv.isArray();
        boolean replyIsGold = msgs && pv.size() > 1 && "assistant".equals(pv.get(pv.size() - 1).path("role").asText());
        if (a == null && !replyIsGold) {
            throw new UserError(where + ": no answer field; expected one of " + ANSWERS + " (the row has "
                    + keys(first) + "; set " + answerKey + ", a dotted path such as reward_model.ground_truth)");
        }
        JsonNode av = a == null ? null : firstValue(head, a);
        String layout = promptField != null && answerField != null ? "fields as set"
                : promptField != null || answerField != null ? "fields as set or detected"
                : p.equals("prompt") && "reward_model.ground_truth".equals(a) && msgs ? "verl layout"
                : p.equals("prompt") && "solution".equals(a) ? (msgs ? "TRL conversational layout" : "TRL standard layout")
                : a == null ? "messages layout"
                : p.equals("problem") && ("solution".equals(a) || "answer".equals(a)) ? "MATH layout"
                : p.equals("question") && "answer".equals(a) && av != null && av.asText().contains("####")
                ? "GSM8K layout" : "fields detected";
        return new Mapping(p, a, promptField != null ? promptKey : null, answerField != null ? answerKey : null, promptKey, answerKey,
                layout);
    }

    /** The first of {@code paths} that any of {@code rows} holds, not null. */
    private static String firstPresent(List<JsonNode> rows, List<String> paths) {
        for (String f : paths) {
            if (firstValue(rows, f) != null) {
                return f;
            }
        }
        return null;
    }

    /** The first value at {@code path} among {@code rows} that is not null. */
    private static JsonNode firstValue(List<JsonNode> rows, String path) {
        for (JsonNode row : rows) {
            JsonNode v = at(row, path);
            if (v != null && !v.isNull()) {
                return v;
            }
        }
        return null;
    }

    /** The value at a dotted path, or null where a step is missing; a key holding the dots itself wins. */
    static JsonNode at(JsonNode row, String path) {
        if (row.has(path)) {
            return row.get(path);
        }
        JsonNode cur = row;
        for (String part : path.split("\\.")) {
            if (cur == null) {
                return null;
            }
            if (cur.isArray() && part.chars().allMatch(Character::isDigit) && !part.isEmpty() && part.length() <= 9) {
                cur = cur.get(Integer.parseInt(part));
            } else if (cur.isObject()) {
                cur = cur.get(part);
            } else {
                return null;
            }
        }
        return cur;
    }

    private static String label(String setting, String path) {
        return setting != null ? setting + " '" + path + "'" : "field '" + path + "'";
    }

    /** A text value: a string or a number; anything else is an error naming what it is. */
    private static String text(JsonNode v, JsonNode row, String where, String label, String what) {
        if (v == null || v.isMissingNode()) {
            throw new UserError(where + ": " + label + " not found (expected " + what + "; the row has " + keys(row) + ")");
        }
        if (v.isNull()) {
            throw new UserError(where + ": " + label + " is null (expected " + what + ")");
        }
        if (v.isObject()) {
            throw new UserError(where + ": " + label + " is a struct " + keys(v) + suggestion(v, label));
        }
        if (v.isArray()) {
            throw new UserError(where + ": " + label + " is a list of " + v.size() + " values, not " + what
                    + " (a prompt may be a message list [{role, content}, …])");
        }
        if (v.isBinary()) {
            throw new UserError(where + ": " + label + " holds bytes, not " + what);
        }
        return nonEmpty(v.asText(), where, label);
    }

    private static String nonEmpty(String s, String where, String label) {
        if (s.isBlank()) {
            throw new UserError(where + ": " + label + " is empty");
        }
        return s;
    }

    /** "; did you mean x.y?" for a struct chosen whole: its answer-like text field, else its first text field. */
    private static String suggestion(JsonNode struct, String label) {
        String path = label.substring(label.indexOf('\'') + 1, label.lastIndexOf('\''));
        String best = null;
        for (String k : List.of("ground_truth", "answer", "solution", "content", "question", "problem")) {
            if (struct.path(k).isTextual()) {
                best = k;
                break;
            }
        }
        if (best == null) {
            var it = struct.fieldNames();
            while (it.hasNext() && best == null) {
                String k = it.next();
                best = struct.get(k).isValueNode() && !struct.get(k).isNull() ? k : null;
            }
        }
        return best == null ? "" : "; did you mean " + path + "." + best + "?";
    }

    /** A message list: {role, content} objects with text in both. */
    private static List<ChatTemplate.Message> messages(JsonNode v, String where, String label) {
        if (v == null || !v.isArray() || v.isEmpty()) {
            throw new UserError(where + ": " + label + " is " + (v == null ? "missing" : v.isArray() ? "an empty list" : "not a list")
                    + " (expected a message list [{role, content}, …])");
        }
        List<ChatTemplate.Message> out = new ArrayList<>();
        for (int i = 0; i < v.size(); i++) {
            JsonNode m = v.get(i);
            if (m == null || !m.isObject() || !m.path("role").isTextual() || !m.path("content").isTextual()) {
                throw new UserError(where + ": " + label + " item " + i + " is " + (m != null && m.isObject() ? "a struct " + keys(m)
                        + " without text role and content" : "not a struct") + " (expected a message list [{role, content}, …])");
            }
            if (m.get("content").asText().isBlank() && !m.get("role").asText().equals("assistant")) {
                throw new UserError(where + ": " + label + " item " + i + " (" + m.get("role").asText() + ") has empty content");
            }
            out.add(new ChatTemplate.Message(m.get("role").asText(), m.get("content").asText()));
        }
        return out;
    }

    private static String lastUser(List<ChatTemplate.Message> msgs, String where, String label) {
        for (int i = msgs.size() - 1; i >= 0; i--) {
            if (msgs.get(i).role().equals("user")) {
                return msgs.get(i).content();
            }
        }
        throw new UserError(where + ": " + label + " has no user turn (roles " + msgs.stream().map(ChatTemplate.Message::role).toList() + ")");
    }

    private static String keys(JsonNode o) {
        List<String> k = new ArrayList<>();
        o.fieldNames().forEachRemaining(k::add);
        return "{" + String.join(", ", k) + "}";
    }
}
