"""The editing world: the 10 actions (actions), the edit program that turns decisions into source
segments (program), the edit decision list (edl), the renderer (render), the gymnasium env (env)
and the classical editors (editors)."""
