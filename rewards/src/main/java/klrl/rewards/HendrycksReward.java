package klrl.rewards;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The MATH grader of Hendrycks et al. as verl's default math reward runs it
 * (volcengine/verl verl/utils/reward_score/math_reward.py at b178a3c, from lm-evaluation-harness): the
 * last {@code \boxed} of the completion, both sides through {@code strip_string}, then exact string
 * equality. 1 or 0. For reproducing numbers reported with that grader; the
 * default {@code math} reward is more forgiving.
 */
public final class HendrycksReward implements Reward {
    @Override
    public Score score(String prompt, String completion, String gold) {
        String boxed = lastBoxedOnly(completion);
        String answer = boxed == null ? null : removeBoxed(boxed);
        boolean ok = answer != null && isEquiv(answer, gold);
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("correct", ok);
        d.put("extracted", answer);
        return new Score(ok ? 1.0 : 0.0, d);
    }

    /** verl's last_boxed_only_string: "\boxed X" up to a $, else the last \boxed{…} or \fbox{…} with braces counted. */
    static String lastBoxedOnly(String s) {
        int idx = s.lastIndexOf("\\boxed");
        if (s.contains("\\boxed ")) {
            String[] parts = s.split("\\\\boxed ", -1);
            return "\\boxed " + parts[parts.length - 1].split("\\$", -1)[0];
        }
        if (idx < 0) {
            idx = s.lastIndexOf("\\fbox");
            if (idx < 0) {
                return null;
            }
        }
        int open = 0;
        for (int i = idx; i < s.length(); i++) {
            if (s.charAt(i) == '{') {
                open++;
            } else if (s.charAt(i) == '}' && --open == 0) {
                return s.substring(idx, i + 1);
            }
        }
        return null;
    }

    /** verl's remove_boxed; null where it would fail its assertions (an \fbox, say), which scores 0 there too. */
    static String removeBoxed(String s) {
        if (s.contains("\\boxed ")) {
            return s.startsWith("\\boxed ") ? s.substring(7) : null;
        }
        return s.startsWith("\\boxed{") && s.endsWith("}") ? s.substring(7, s.length() - 1) : null;
    }

    static boolean isEquiv(String a, String b) {
        if (a == null || b == null) {
            return a == null && b == null;
        }
        try {
            return stripString(a).equals(stripString(b));
        } catch (RuntimeException e) {
            return a.equals(b);
        }
    }

    static String stripString(String s) {
        s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\");
        s = s.replace("tfrac", "frac").replace("dfrac", "frac");
        s = s.replace("\\left", "").replace("\\right", "");
        s = s.replace("^{\\circ}", "").replace("^\\circ", "");
        s = s.replace("\\$", "");
        s = removeRightUnits(s);
        s = s.replace("\\%", "").replace("%", "");
        s = s.replace(" .", " 0.").replace("{.", "{0.");
        if (s.isEmpty()) {
            return s;
        }
        if (s.charAt(0) == '.') {
            s = "0" + s;
        }
        String[] eq = s.split("=", -1);
        if (eq.length == 2 && eq[0].length() <= 2) {
            s = eq[1];
        }
        s = fixSqrt(s);
        s = s.replace(" ", "");
        s = fixFracs(s);
        if (s.equals("0.5")) {
            s = "\\frac{1}{2}";
        }
        return fixASlashB(s);
    }

    private static String removeRightUnits(String s) {
        if (!s.contains("\\text{ ")) {
            return s;
        }
        String[] parts = s.split(Pattern.quote("\\text{ "), -1);
        if (parts.length != 2) {
            throw new IllegalStateException("units"); // verl asserts; is_equiv then compares the raw strings
        }
        return parts[0];
    }

    private static String fixSqrt(String s) {
        if (!s.contains("\\sqrt")) {
            return s;
        }
        String[] parts = s.split(Pattern.quote("\\sqrt"), -1);
        StringBuilder out = new StringBuilder(parts[0]);
        for (int i = 1; i < parts.length; i++) {
            String p = parts[i];
            if (p.isEmpty()) {
                throw new IllegalStateException("sqrt"); // verl indexes split[0] and fails
            }
            out.append(p.charAt(0) != '{' ? "\\sqrt{" + p.charAt(0) + "}" + p.substring(1) : "\\sqrt" + p);
        }
        return out.toString();
    }

    private static String fixFracs(String s) {
        String[] parts = s.split(Pattern.quote("\\frac"), -1);
        StringBuilder out = new StringBuilder(parts[0]);
        for (int i = 1; i < parts.length; i++) {
            String p = parts[i];
            out.append("\\frac");
            if (p.isEmpty()) {
                throw new IllegalStateException("frac"); // verl indexes substr[0] and fails
            }
            if (p.charAt(0) == '{') {
                out.append(p);
                continue;
            }
            if (p.length() < 2) {
                return s;
            }
            char a = p.charAt(0), b = p.charAt(1);
            String rest = p.substring(2);
            out.append(b != '{' ? "{" + a + "}{" + b + "}" + rest : "{" + a + "}" + b + rest);
        }
        return out.toString();
    }

    private static String fixASlashB(String s) {
        String[] parts = s.split("/", -1);
        if (parts.length != 2) {
            return s;
        }
        try {
            int a = Integer.parseInt(parts[0]), b = Integer.parseInt(parts[1]);
            return s.equals(a + "/" + b) ? "\\frac{" + a + "}{" + b + "}" : s;
        } catch (NumberFormatException e) {
            return s;
        }
    }
}
