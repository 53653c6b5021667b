package klrl.reward;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import javax.tools.ToolProvider;
import klrl.util.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The worked example in examples/reward-plugin, compiled and jarred as its build script does, loaded by name. */
class RewardJarTest {
    @TempDir Path tmp;

    Path exampleJar() throws Exception {
        Path classes = Files.createDirectories(tmp.resolve("classes"));
        int rc = ToolProvider.getSystemJavaCompiler().run(null, null, null, "--release", "17", "-cp",
                System.getProperty("java.class.path"), "-d", classes.toString(),
                Path.of("../examples/reward-plugin/ConciseMathReward.java").toString());
        assertEquals(0, rc);
        Path jar = tmp.resolve("concise-reward.jar");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
            out.putNextEntry(new JarEntry("example/ConciseMathReward.class"));
            out.write(Files.readAllBytes(classes.resolve("example/ConciseMathReward.class")));
            out.closeEntry();
        }
        return jar;
    }

    @Test
    void aUsersRewardLoadsFromItsJar() throws Exception {
        Path jar = exampleJar();
        try (RewardPool pool = new RewardPool("example.ConciseMathReward", jar.toString(), 0, 1, 1000)) {
            String padding = "x".repeat(600);
            List<RewardPool.Scored> s = pool.score(List.of("1+1", "1+1"), List.of("\\boxed{2}", padding + " \\boxed{2}"),
                    List.of("2", "2"));
            assertEquals(1.0, s.get(0).reward(), 1e-12);
            assertTrue(s.get(1).correct());
            assertEquals(1.0 - 0.001 * (padding.length() + " \\boxed{2}".length() - 400), s.get(1).reward(), 1e-9);
        }
        UserError missing = assertThrows(UserError.class, () -> new RewardPool("example.ConciseMathReward",
                tmp.resolve("nope.jar").toString(), 0, 1, 1000));
        assertTrue(missing.getMessage().startsWith("train.reward_jar: ") && missing.getMessage().contains("nope.jar"),
                missing.getMessage());
        UserError noClass = assertThrows(UserError.class, () -> new RewardPool("example.Other", jar.toString(), 0, 1, 1000));
        assertTrue(noClass.getMessage().contains("example.Other"), noClass.getMessage());
    }
}
