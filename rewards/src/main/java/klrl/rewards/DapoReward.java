package klrl.rewards;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * DAPO's math reward as verl runs it (volcengine/verl verl/utils/reward_score/math_dapo.py at b178a3c, Minerva
 * normalisation): the last "Answer: …" line of the completion's final 300 characters, normalised as
 * Minerva does, must equal the normalised gold exactly. Scores +1 or −1, as DAPO trains.
 */
public final class DapoReward implements Reward {
    private static final Pattern ANSWER = Pattern.compile("(?i)Answer\\s*:\\s*([^\\n]+)");

    @Override
    public Score score(String prompt, String completion, String gold) {
        String tail = completion.length() > 300 ? completion.substring(completion.length() - 300) : completion;
        Matcher m = ANSWER.matcher(tail);
        String extracted = "[INVALID]";
        while (m.find()) {
            extracted = m.group(1);
        }
        String pred = normalizeFinalAnswer(extracted);
        boolean ok = pred.equals(normalizeFinalAnswer(gold));
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("correct", ok);
        d.put("extracted", pred);
        return new Score(ok ? 1.0 : -1.0, d);
    }

    private static final List<String[]> SUBSTITUTIONS = List.of(new String[] {"an ", ""}, new String[] {"a ", ""},
            new String[] {".$", "$"}, new String[] {"\\$", ""}, new String[] {"\\ ", ""}, new String[] {" ", ""},
            new String[] {"mbox", "text"}, new String[] {",\\text{and}", ","}, new String[] {"\\text{and}", ","},
            new String[] {"\\text{m}", "\\text{}"});
    private static final List<String> REMOVED = List.of("square", "ways", "integers", "dollars", "mph", "inches", "hours",
            "km", "units", "\\ldots", "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds",
            "meters", "meals", "edges", "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}",
            "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}",
            "\"", "\\dots");

    /** Minerva's normalize_final_answer, step by step as verl applies it. */
    static String normalizeFinalAnswer(String s) {
        String[] eq = s.split("=", -1);
        s = eq[eq.length - 1];
        for (String[] sub : SUBSTITUTIONS) {
            s = s.replace(sub[0], sub[1]);
        }
        for (String r : REMOVED) {
            s = s.replace(r, "");
        }
        s = s.replaceAll("(.*?)(\\$)(.*?)(\\$)(.*)", "\\$$3\\$"); // per line: its first $…$ span
        s = s.replaceAll("(\\\\text\\{)(.*?)(\\})", "$2");
        s = s.replaceAll("(\\\\textbf\\{)(.*?)(\\})", "$2");
        s = s.replaceAll("(\\\\overline\\{)(.*?)(\\})", "$2");
        s = s.replaceAll("(\\\\boxed\\{)(.*)(\\})", "$2");
        s = s.replaceAll("(frac)([^{])(.)", "frac{$2}{$3}");
        s = s.replaceAll("(sqrt)([^{])", "sqrt{$2}");
        s = s.replace("$", "");
        String noCommas = s.replace(",", "");
        if (!noCommas.isEmpty() && noCommas.chars().allMatch(Character::isDigit)) {
            s = noCommas;
        }
        return s.strip();
    }
}
