package config

func (v *validator) ingressDefaults() {}

func (v *validator) validateIngress() {}
