package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** scripts/docker-run as a script: with a stand-in docker binary that prints the arguments it gets. */
class DockerRunTest {
    @TempDir Path tmp;

    List<String> dockerArgs(String... args) throws Exception {
        Path stub = tmp.resolve("docker");
        Files.writeString(stub, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n");
        stub.toFile().setExecutable(true);
        List<String> cmd = new java.util.ArrayList<>(List.of(Path.of("../scripts/docker-run").toAbsolutePath().toString()));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(tmp.toFile());
        pb.environment().put("DOCKER", stub.toString());
        pb.environment().remove("MODELS");
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), new String(p.getErrorStream().readAllBytes()));
        return out.lines().toList();
    }

    @Test
    void everyCommandAndFlagPassesThroughUnchanged() throws Exception {
        List<String> a = dockerArgs("plan", "--config", "qwen2.5-7b-math", "--gpus", "8", "--json");
        int image = a.indexOf("klrl:cuda");
        assertEquals(List.of("plan", "--config", "qwen2.5-7b-math", "--gpus", "8", "--json"), a.subList(image + 1, a.size()));
        assertTrue(a.containsAll(List.of("--gpus", "all", "-v", tmp.toRealPath() + "/models:/models:ro")), a.toString());
        List<String> t = dockerArgs("--devices", "0,1,2,3", "--set", "model.lora.rank=64", "--kl", "k1", "--kl-in-reward");
        assertEquals(List.of("--devices", "0,1,2,3", "--set", "model.lora.rank=64", "--kl", "k1", "--kl-in-reward"),
                t.subList(t.indexOf("klrl:cuda") + 1, t.size()));
        assertTrue(!t.contains("--device") && !t.contains("cuda"), "no device flag is added: " + t);
    }

    @Test
    void aUsersFilesAreMountedAndTheirPathsRewritten() throws Exception {
        Path cfg = Files.createDirectories(tmp.resolve("cfgs")).resolve("my run.yaml");
        Files.writeString(cfg, "base: qwen2.5-7b-math\n");
        Path jar = Files.writeString(tmp.resolve("r.jar"), "jar");
        List<String> a = dockerArgs("--config", cfg.toString(), "--reward-jar=" + jar, "eval");
        assertTrue(a.contains(tmp.toRealPath().resolve("cfgs") + ":/mnt/host/0:ro"), a.toString());
        assertTrue(a.contains(tmp.toRealPath() + ":/mnt/host/1:ro"), a.toString());
        assertEquals(List.of("--config", "/mnt/host/0/my run.yaml", "--reward-jar=/mnt/host/1/r.jar", "eval"),
                a.subList(a.indexOf("klrl:cuda") + 1, a.size()));
        // a preset name is no host file: it stays as it is
        List<String> p = dockerArgs("--config", "grid-k3-loss");
        assertEquals(List.of("--config", "grid-k3-loss"), p.subList(p.indexOf("klrl:cuda") + 1, p.size()));
    }

    @Test
    void theComposeWalkthroughsTrainerCommandIsAValidRunOnTheSglangServer() throws Exception {
        var compose = new com.fasterxml.jackson.databind.ObjectMapper(new com.fasterxml.jackson.dataformat.yaml.YAMLFactory())
                .readTree(Path.of("../docker/compose.yaml").toFile());
        List<String> args = new java.util.ArrayList<>();
        compose.path("services").path("trainer").path("command").forEach(n -> args.add(n.asText()
                .replace("${CONFIG:-qwen2.5-7b-math}", "qwen2.5-7b-math").replace("${MODEL:-Qwen2.5-7B}", "Qwen2.5-7B")
                .replace("${TRAIN_GPUS:-0,1,2,3}", "0,1,2,3").replace("${RUN:-sglang-rollouts}", "sglang-rollouts")));
        TrainCommand t = new TrainCommand();
        new picocli.CommandLine(t).parseArgs(args.toArray(String[]::new));
        var cfg = TrainCommand.config(t);
        assertEquals("sglang", cfg.rollout().engine());
        assertEquals(List.of("http://sglang:30000"), cfg.rollout().urls());
        assertEquals("/weights", cfg.rollout().weightsDir());
        assertEquals("0,1,2,3", cfg.model().device());
        // the server reads the versions where the trainer writes them
        assertTrue(compose.path("services").path("sglang").path("volumes").toString().contains("weights:/weights"), compose.toString());
        assertTrue(compose.path("services").path("sglang").path("command").asText().contains("--port 30000"));
    }
}
